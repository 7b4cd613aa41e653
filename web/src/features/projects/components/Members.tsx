import { useId, useState, type FormEvent, type KeyboardEvent } from "react";
import type { DirectoryEntry, Project } from "../../../api/types";
import { ErrorMessage, fieldError } from "../../../components/Feedback";
import { useRoles } from "../../admin/api/admin";
import { useGrantMember, useRevokeMember, useUserNames, useUserSearch } from "../api/projects";

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

// A search box whose matches are a listbox: typing narrows it, arrow keys and Enter (or a
// click) pick a user.
function UserPicker({ picked, onPick, error }: { picked: DirectoryEntry | null; onPick: (user: DirectoryEntry | null) => void; error?: string }) {
  const [query, setQuery] = useState("");
  const [active, setActive] = useState(0);
  const search = useUserSearch(query);
  const id = useId();
  const matches = query.trim() ? search.data ?? [] : [];
  const open = matches.length > 0 && !picked;

  function choose(user: DirectoryEntry) {
    onPick(user);
    setQuery(user.username);
  }

  function keys(event: KeyboardEvent) {
    if (!open) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      setActive((active + step + matches.length) % matches.length);
    } else if (event.key === "Enter") {
      event.preventDefault();
      choose(matches[Math.min(active, matches.length - 1)]);
    }
  }

  return (
    <div className="field picker">
      <label htmlFor={id}>User</label>
      <input
        id={id}
        role="combobox"
        aria-expanded={open}
        aria-controls={`${id}-list`}
        aria-autocomplete="list"
        aria-activedescendant={open ? `${id}-option-${active}` : undefined}
        aria-invalid={error ? true : undefined}
        aria-describedby={error ? `${id}-error` : `${id}-hint`}
        autoComplete="off"
        placeholder="search by name"
        value={query}
        onKeyDown={keys}
        onChange={(e) => {
          setQuery(e.target.value);
          setActive(0);
          onPick(null);
        }}
      />
      {open && (
        <ul id={`${id}-list`} role="listbox" aria-label="Matching users" className="options">
          {matches.map((user, index) => (
            <li
              key={user.id}
              id={`${id}-option-${index}`}
              role="option"
              aria-selected={index === active}
              onMouseDown={(e) => e.preventDefault()}
              onClick={() => choose(user)}
            >
              <strong>{user.username}</strong> {user.full_name && <span className="muted">{user.full_name}</span>}
            </li>
          ))}
        </ul>
      )}
      {query.trim() && !search.isFetching && search.data?.length === 0 && !picked && <small className="hint">No user matches “{query}”.</small>}
      <small id={`${id}-hint`} className="hint">
        {picked ? `Adding ${picked.username}` : "type part of a username or full name"}
      </small>
      {error && (
        <small id={`${id}-error`} className="field-error" role="alert">
          {error}
        </small>
      )}
    </div>
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
                    <RoleSelect label={`Role of ${name}`} value={memberRole} disabled={change.isPending} onChange={(next) => change.mutate({ user_id: id, role: next })} />
                  </td>
                  <td>
                    <button type="button" onClick={() => revoke.mutate(id)} disabled={revoke.isPending} aria-label={`Remove ${name}`}>
                      Remove
                    </button>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <ErrorMessage error={revoke.error ?? change.error} />
      <form className="form inline card" onSubmit={submit} noValidate>
        <h2>Add a member</h2>
        <UserPicker key={pickerKey} picked={picked} onPick={setPicked} error={missing ?? fieldError(grant.error, "user_id")} />
        <div className="field">
          <label htmlFor={roleId}>Role</label>
          <RoleSelect id={roleId} value={role} onChange={setRole} />
        </div>
        <ErrorMessage error={grant.error} />
        <button type="submit" className="primary" disabled={grant.isPending}>
          Add member
        </button>
      </form>
    </>
  );
}
