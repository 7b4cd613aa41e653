import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { ErrorMessage, fieldError, Loading } from "../../../components/Feedback";
import { Field } from "../../../components/Field";
import { Pagination } from "../../../components/Pagination";
import { formatTime } from "../../../lib/format";
import { useCreateUser, useRoles, useUpdateUser, useUsers } from "../api/admin";

function NewUserForm() {
  const create = useCreateUser();
  const [form, setForm] = useState({ username: "", email: "", full_name: "", password: "", system_role: "user" as "user" | "admin" });
  const set = (name: keyof typeof form) => (e: { target: { value: string } }) => setForm({ ...form, [name]: e.target.value });
  function submit(event: FormEvent) {
    event.preventDefault();
    create.mutate(form, { onSuccess: () => setForm({ username: "", email: "", full_name: "", password: "", system_role: "user" }) });
  }
  return (
    <form className="form card" onSubmit={submit}>
      <h2>New user</h2>
      <Field label="Username" required value={form.username} error={fieldError(create.error, "username")} onChange={set("username")} />
      <Field label="Email" type="email" required value={form.email} error={fieldError(create.error, "email")} onChange={set("email")} />
      <Field label="Full name" value={form.full_name} error={fieldError(create.error, "full_name")} onChange={set("full_name")} />
      <Field label="Password" type="password" autoComplete="new-password" required value={form.password} error={fieldError(create.error, "password")} onChange={set("password")} />
      <div className="field">
        <label htmlFor="new-user-role">System role</label>
        <select id="new-user-role" value={form.system_role} onChange={set("system_role")}>
          <option>user</option>
          <option>admin</option>
        </select>
      </div>
      <ErrorMessage error={create.error} />
      <button type="submit" className="primary" disabled={create.isPending}>
        Create user
      </button>
    </form>
  );
}

export function UsersPage() {
  const [q, setQ] = useState("");
  const [page, setPage] = useState(1);
  const users = useUsers(q, page);
  const roles = useRoles();
  const update = useUpdateUser();
  return (
    <section>
      <h1>Users and roles</h1>
      <div className="filters" role="search">
        <label>
          Search users
          <input type="search" value={q} onChange={(e) => { setQ(e.target.value); setPage(1); }} />
        </label>
      </div>
      <ErrorMessage error={users.error ?? update.error} />
      {!users.data ? (
        <Loading what="users" />
      ) : (
        <div className="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                <th scope="col">Active</th>
                <th scope="col">Last login</th>
              </tr>
            </thead>
            <tbody>
              {users.data.items.map((user) => (
                <tr key={user.id}>
                  <td>
                    <Link to={`/admin/history/user/${user.id}`}>{user.username}</Link>
                  </td>
                  <td>{user.email}</td>
                  <td>
                    <select
                      aria-label={`System role of ${user.username}`}
                      value={user.system_role}
                      onChange={(e) => update.mutate({ id: user.id, system_role: e.target.value as "user" | "admin" })}
                    >
                      <option>user</option>
                      <option>admin</option>
                    </select>
                  </td>
                  <td>
                    <input
                      type="checkbox"
                      aria-label={`${user.username} is active`}
                      checked={user.active}
                      onChange={(e) => update.mutate({ id: user.id, active: e.target.checked })}
                    />
                  </td>
                  <td>{formatTime(user.last_login_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pagination meta={users.data?.meta} onPage={setPage} />
      <NewUserForm />
      <h2>Roles</h2>
      <ul className="list">
        {roles.data?.items.map((role) => (
          <li key={role.name}>
            <strong>{role.name}</strong> {role.builtin && <span className="muted">(built in)</span>}: {role.permissions.join(", ")}
          </li>
        ))}
      </ul>
    </section>
  );
}
