import { ErrorMessage, Loading } from "../../../components/Feedback";
import { useAdminStats } from "../api/admin";

function Value({ value }: { value: unknown }) {
  if (value !== null && typeof value === "object") {
    return (
      <table>
        <tbody>
          {Object.entries(value as Record<string, unknown>).map(([key, inner]) => (
            <tr key={key}>
              <th scope="row">{key}</th>
              <td>
                <Value value={inner} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    );
  }
  return <>{String(value)}</>;
}

// admin/stats as the server reports it (projection lag, queue depths, counts), as nested tables.
export function StatsPage() {
  const stats = useAdminStats();
  return (
    <section>
      <div className="page-head">
        <h1>System stats</h1>
        <button type="button" onClick={() => void stats.refetch()} disabled={stats.isFetching}>
          Refresh
        </button>
      </div>
      <ErrorMessage error={stats.error} />
      {stats.isPending ? (
        <Loading what="stats" />
      ) : stats.data === null ? (
        <p className="empty">This server does not report admin stats yet.</p>
      ) : (
        <div className="scroll">
          <Value value={stats.data} />
        </div>
      )}
    </section>
  );
}
