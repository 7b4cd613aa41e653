import { useState, type FormEvent } from "react";
import { useLocation, useNavigate } from "react-router";
import { ApiError } from "../../../api/client";
import { Field } from "../../../components/Field";
import { useLogin } from "../api/session";

function loginProblem(error: unknown): string | null {
  if (!error) return null;
  if (error instanceof ApiError && error.status === 429) {
    const wait = error.meta.retry_after;
    return `${error.message}${typeof wait === "number" ? ` (try again in ${wait} s)` : ""}`;
  }
  return error instanceof Error ? error.message : String(error);
}

export function LoginPage() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const loginMutation = useLogin();
  const navigate = useNavigate();
  const location = useLocation();
  const from = (location.state as { from?: string } | null)?.from ?? "/";
  const problem = loginProblem(loginMutation.error);

  function submit(event: FormEvent) {
    event.preventDefault();
    loginMutation.mutate({ username, password }, { onSuccess: () => navigate(from, { replace: true }) });
  }

  return (
    <main className="login">
      <form className="card login-card" onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">Log in to AI Platform</h1>
        <Field label="Username" name="username" autoComplete="username" required value={username} onChange={(e) => setUsername(e.target.value)} />
        <Field
          label="Password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        {problem && (
          <p className="error" role="alert">
            {problem}
          </p>
        )}
        <button type="submit" className="primary" disabled={loginMutation.isPending}>
          {loginMutation.isPending ? "Logging in…" : "Log in"}
        </button>
      </form>
    </main>
  );
}
