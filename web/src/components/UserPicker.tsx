import { useId, useState, type KeyboardEvent } from "react";
import { useUserSearch } from "../api/directory";
import type { DirectoryEntry } from "../api/types";

interface UserPickerProps {
  label: string;
  picked: DirectoryEntry | null;
  // Called with the chosen user, and with null as soon as the search text changes again.
  onPick: (user: DirectoryEntry | null) => void;
  error?: string;
  hint?: string;
  // The search text, when the caller keeps it (to show the name of a user chosen elsewhere).
  query?: string;
  onQueryChange?: (query: string) => void;
}

// A search box whose matches are a listbox: typing narrows it, arrow keys and Enter (or a
// click) pick a user.
export function UserPicker({ label, picked, onPick, error, hint = "type part of a username or full name", ...controlled }: UserPickerProps) {
  const [ownQuery, setOwnQuery] = useState("");
  const query = controlled.query ?? ownQuery;
  const setQuery = controlled.onQueryChange ?? setOwnQuery;
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
      <label htmlFor={id}>{label}</label>
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
        {picked ? `chosen: ${picked.full_name || picked.username}` : hint}
      </small>
      {error && (
        <small id={`${id}-error`} className="field-error" role="alert">
          {error}
        </small>
      )}
    </div>
  );
}
