import { useEffect, useState } from "react";
import { Link, useSearchParams } from "react-router";
import { useUserNames } from "../../../api/directory";
import { ErrorMessage, Loading } from "../../../components/Feedback";
import { Pagination } from "../../../components/Pagination";
import { UserPicker } from "../../../components/UserPicker";
import { formatTime, shortId } from "../../../lib/format";
import { historyPath, useAudit } from "../api/admin";

const RESOURCE_TYPES = ["project", "experiment", "dataset", "model", "job", "user", "role", "inbox"];

// datetime-local gives local time without a zone; the API wants ISO 8601 UTC.
function toIso(local: string | null): string | undefined {
  return local ? new Date(local).toISOString() : undefined;
}

export function AuditPage() {
  const [params, setParams] = useSearchParams();
  const filters = {
    actor_id: params.get("actor_id") ?? undefined,
    resource_type: params.get("resource_type") ?? undefined,
    resource_id: params.get("resource_id") ?? undefined,
    since: toIso(params.get("since")),
    until: toIso(params.get("until")),
    page: Number(params.get("page") ?? 1),
  };
  const audit = useAudit(filters);
  // The actor is picked by name; one chosen from the table (or the address) is named here too.
  const actorNames = useUserNames(filters.actor_id ? [filters.actor_id] : []);
  const actor = filters.actor_id ? actorNames.data?.[filters.actor_id] : undefined;
  const [actorText, setActorText] = useState("");
  useEffect(() => {
    if (actor) setActorText(actor.username);
  }, [actor]);

  function setFilter(name: string, value: string) {
    const next = new URLSearchParams(params);
    if (value) next.set(name, value);
    else next.delete(name);
    if (name !== "page") next.delete("page");
    setParams(next, { replace: true });
  }

  return (
    <section>
      <h1>Audit log</h1>
      <div className="filters" role="search">
        <UserPicker
          label="Actor"
          hint="anyone when empty"
          query={actorText}
          onQueryChange={setActorText}
          picked={filters.actor_id ? actor ?? { id: filters.actor_id, username: actorText, full_name: "" } : null}
          onPick={(user) => setFilter("actor_id", user?.id ?? "")}
        />
        <label>
          Resource
          <select value={filters.resource_type ?? ""} onChange={(e) => setFilter("resource_type", e.target.value)}>
            <option value="">any</option>
            {RESOURCE_TYPES.map((type) => (
              <option key={type}>{type}</option>
            ))}
          </select>
        </label>
        <label>
          Resource id
          <input defaultValue={filters.resource_id} onChange={(e) => setFilter("resource_id", e.target.value.trim())} />
        </label>
        <label>
          Since
          <input type="datetime-local" defaultValue={params.get("since") ?? ""} onChange={(e) => setFilter("since", e.target.value)} />
        </label>
        <label>
          Until
          <input type="datetime-local" defaultValue={params.get("until") ?? ""} onChange={(e) => setFilter("until", e.target.value)} />
        </label>
      </div>
      <ErrorMessage error={audit.error} />
      {!audit.data ? (
        <Loading what="the audit log" />
      ) : (
        <div className="scroll">
          <table className="audit">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">Event</th>
                <th scope="col">Resource</th>
                <th scope="col">From</th>
                <th scope="col">Data</th>
              </tr>
            </thead>
            <tbody>
              {audit.data.items.map((entry) => (
                <tr key={entry.position}>
                  <td>{formatTime(entry.recorded_at)}</td>
                  <td>
                    <button type="button" className="link" onClick={() => setFilter("actor_id", entry.actor_id)}>
                      {entry.actor_username ?? entry.actor_id}
                    </button>
                  </td>
                  <td>{entry.type}</td>
                  <td>
                    {historyPath(entry.resource_type, entry.resource_id) ? (
                      <Link to={`/admin/history/${entry.resource_type}/${entry.resource_id}`}>
                        {entry.resource_type} {shortId(entry.resource_id)}
                      </Link>
                    ) : (
                      `${entry.resource_type} ${shortId(entry.resource_id)}`
                    )}
                  </td>
                  <td>{entry.client_ip ?? "–"}</td>
                  <td>
                    <details>
                      <summary>data</summary>
                      <pre>{JSON.stringify(entry.data, null, 2)}</pre>
                    </details>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pagination meta={audit.data?.meta} onPage={(page) => setFilter("page", String(page))} />
    </section>
  );
}
