import { useQuery } from "@tanstack/react-query";
import { request } from "../api/client";
import { ErrorMessage, Loading } from "./Feedback";

type Resource = Record<string, unknown>;

function show(value: unknown): string {
  if (value === null || value === undefined) return "–";
  return typeof value === "string" ? value : JSON.stringify(value);
}

// Time travel: the resource at `path` as it was right after the event at `position` (the API
// folds its stream up to there: GET …/{id}?as_of=<position>), beside what has changed since.
export function AsOfView({ path, position, version, onClose }: { path: string; position: number; version?: number; onClose: () => void }) {
  const past = useQuery({
    queryKey: ["history", "as-of", path, position],
    queryFn: () => request<Resource>(path, { query: { as_of: position } }),
    // The past does not change.
    staleTime: Infinity,
  });
  const now = useQuery({ queryKey: ["history", "now", path], queryFn: () => request<Resource>(path), retry: false });
  const current = now.data;
  return (
    <section className="card as-of" aria-labelledby="as-of-title">
      <div className="page-head">
        <h2 id="as-of-title">As it was{version !== undefined ? ` at v${version}` : ""}</h2>
        <button type="button" onClick={onClose}>
          Back to now
        </button>
      </div>
      <p className="muted">After the event at position {position}. Fields marked “changed” differ now.</p>
      <ErrorMessage error={past.error} />
      {!past.data && !past.error && <Loading what="the past state" />}
      {past.data && (
        <div className="scroll">
          <table aria-label="State as of this event">
            <tbody>
              {Object.entries(past.data).map(([key, value]) => {
                const changed = current !== undefined && show(current[key]) !== show(value);
                return (
                  <tr key={key} className={changed ? "changed" : undefined}>
                    <th scope="row">{key}</th>
                    <td className="mono">{show(value)}</td>
                    <td>{changed && <span className="badge badge-changed" title={`now: ${show(current[key])}`}>changed</span>}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {now.error !== null && past.data && <p className="muted">It is not readable now ({now.error instanceof Error ? now.error.message : "gone"}).</p>}
    </section>
  );
}
