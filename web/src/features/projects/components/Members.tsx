import { useId, useState, type FormEvent } from "react";
import type { DirectoryEntry, Project } from "../../../api/types";
import { ErrorMessage, fieldError } from "../../../components/Feedback";
import { useRoles } from "../../admin/api/admin";
import { useUserNames } from "../../../api/directory";
import { UserPicker } from "../../../components/UserPicker";
import { useGrantMember, useProjectPermission, useRevokeMember } from "../api/projects";

const BUILTIN_ROLES = ["owner", "maintainer", "developer", "viewer"];

function RoleSelect({ id, value, label, disabled, onChange }: { id?: string; value: string; label?: string; disabled?: boolean; onChange: (role: string) => void }) {
  const roles = useRoles();
  const names = roles.data?.items.map((role) => role.name) ?? BUILTIN_ROLES;
  return (
    <select id={id} aria-label={label} value={value} disabled={disabled} onChange={(e) => onChange(e.target.value)}>
      {[...new Set([...names, value])].map((name) => (
        <option key={name}>{name}</option>
      ))}
    </select>
  );
}

export function Members({ project }: { project: Project }) {
  const grant = useGrantMember(project.id);
  const change = useGrantMember(project.id);
  const revoke = useRevokeMember(project.id);
  const members = Object.entries(project.members);
  const names = useUserNames(members.map(([id]) => id));
  const [picked, setPicked] = useState<DirectoryEntry | null>(null);
  const [role, setRole] = useState("developer");
  const [pickerKey, setPickerKey] = useState(0);
  const [missing, setMissing] = useState<string | undefined>();
  const roleId = useId();
  const canManage = useProjectPermission(project.members, "member:manage");

  function submit(event: FormEvent) {
    event.preventDefault();
    if (!picked) {
      setMissing("pick a user from the list");
      return;
    }
    setMissing(undefined);
    grant.mutate(
      { user_id: picked.id, role },
      {
        onSuccess: () => {
          setPicked(null);
          setPickerKey((key) => key + 1); // a fresh, empty search box
        },
      },
    );
  }

  const nameOf = (id: string) => names.data?.[id]?.username;
  return (
    <>
      <div className="scroll">
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
            {members.map(([id, memberRole]) => {
              const name = nameOf(id) ?? id.slice(0, 8);
              return (
                <tr key={id}>
                  <td>
                    {nameOf(id) ?? <span className="mono">{id.slice(0, 8)}</span>}
                    {names.data?.[id]?.full_name && <span className="muted"> {names.data[id].full_name}</span>}
                  </td>
                  <td>
                    {canManage ? (
                      <RoleSelect label={`Role of ${name}`} value={memberRole} disabled={change.isPending} onChange={(next) => change.mutate({ user_id: id, role: next })} />
                    ) : (
                      memberRole
                    )}
                  </td>
                  <td>
                    {canManage && (
                      <button type="button" onClick={() => revoke.mutate(id)} disabled={revoke.isPending} aria-label={`Remove ${name}`}>
                        Remove
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <ErrorMessage error={revoke.error ?? change.error} />
      {!canManage && <p className="muted">Your role in this project does not let you change its members.</p>}
      {canManage && (
        <form className="form inline card" onSubmit={submit} noValidate>
          <h2>Add a member</h2>
          <UserPicker key={pickerKey} label="User" picked={picked} onPick={setPicked} error={missing ?? fieldError(grant.error, "user_id")} />
          <div className="field">
            <label htmlFor={roleId}>Role</label>
            <RoleSelect id={roleId} value={role} onChange={setRole} />
          </div>
          <ErrorMessage error={grant.error} />
          <button type="submit" className="primary" disabled={grant.isPending}>
            Add member
          </button>
        </form>
      )}
    </>
  );
}
