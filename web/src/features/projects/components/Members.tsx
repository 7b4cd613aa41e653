import { useState, type FormEvent } from "react";
import type { Project } from "../../../api/types";
import { ErrorMessage, fieldError } from "../../../components/Feedback";
import { Field } from "../../../components/Field";
import { useGrantMember, useRevokeMember } from "../api/projects";

const ROLES = ["owner", "maintainer", "developer", "viewer"];

export function Members({ project }: { project: Project }) {
  const grant = useGrantMember(project.id);
  const revoke = useRevokeMember(project.id);
  const [userId, setUserId] = useState("");
  const [role, setRole] = useState("developer");

  function submit(event: FormEvent) {
    event.preventDefault();
    grant.mutate({ user_id: userId.trim(), role }, { onSuccess: () => setUserId("") });
  }

  return (
    <>
      <table>
        <caption>Members</caption>
        <thead>
          <tr>
            <th scope="col">User</th>
            <th scope="col">Role</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {Object.entries(project.members).map(([id, memberRole]) => (
            <tr key={id}>
              <td className="mono">{id}</td>
              <td>{memberRole}</td>
              <td>
                <button type="button" onClick={() => revoke.mutate(id)} aria-label={`Remove ${id}`}>
                  Remove
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <ErrorMessage error={revoke.error} />
      <form className="form inline card" onSubmit={submit}>
        <h2>Add a member</h2>
        <Field label="User id" required value={userId} error={fieldError(grant.error, "user_id")} onChange={(e) => setUserId(e.target.value)} />
        <div className="field">
          <label htmlFor="member-role">Role</label>
          <select id="member-role" value={role} onChange={(e) => setRole(e.target.value)}>
            {ROLES.map((name) => (
              <option key={name}>{name}</option>
            ))}
          </select>
        </div>
        <ErrorMessage error={grant.error} />
        <button type="submit" className="primary" disabled={grant.isPending}>
          Add member
        </button>
      </form>
    </>
  );
}
