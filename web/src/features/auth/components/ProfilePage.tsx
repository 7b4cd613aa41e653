import { useState, type FormEvent } from "react";
import { ErrorMessage, fieldError, Loading } from "../../../components/Feedback";
import { Field } from "../../../components/Field";
import { useChangePassword, useMe } from "../api/session";

export function ProfilePage() {
  const me = useMe();
  const change = useChangePassword(me.data?.id);
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  if (!me.data) return <Loading what="your profile" />;

  function submit(event: FormEvent) {
    event.preventDefault();
    change.mutate(
      { current_password: current, password: next },
      {
        onSuccess: () => {
          setCurrent("");
          setNext("");
        },
      },
    );
  }

  return (
    <section>
      <h1>Profile</h1>
      <dl className="facts">
        <dt>Username</dt>
        <dd>{me.data.username}</dd>
        <dt>Name</dt>
        <dd>{me.data.full_name || "–"}</dd>
        <dt>Email</dt>
        <dd>{me.data.email}</dd>
        <dt>Role</dt>
        <dd>{me.data.system_role}</dd>
      </dl>
      <form className="card form" onSubmit={submit}>
        <h2>Change password</h2>
        <Field
          label="Current password"
          type="password"
          autoComplete="current-password"
          required
          value={current}
          error={fieldError(change.error, "current_password")}
          onChange={(e) => setCurrent(e.target.value)}
        />
        <Field
          label="New password"
          type="password"
          autoComplete="new-password"
          required
          value={next}
          error={fieldError(change.error, "password")}
          onChange={(e) => setNext(e.target.value)}
        />
        <ErrorMessage error={change.error} />
        {change.isSuccess && <p role="status">Password changed.</p>}
        <button type="submit" className="primary" disabled={change.isPending}>
          Change password
        </button>
      </form>
    </section>
  );
}
