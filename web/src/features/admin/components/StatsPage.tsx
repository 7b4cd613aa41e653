import type { PlatformStats } from "../../../api/types";
import { ErrorMessage, Loading, StatusBadge } from "../../../components/Feedback";
import { formatBytes, formatNumber, formatTime } from "../../../lib/format";
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

function Lag({ stats }: { stats: PlatformStats }) {
  return (
    <div className="scroll">
      <table>
        <caption>Projection lag</caption>
        <thead>
          <tr>
            <th scope="col">Read model</th>
            <th scope="col">State</th>
            <th scope="col">Events behind</th>
            <th scope="col">Seconds behind</th>
            <th scope="col">Rebuild</th>
          </tr>
        </thead>
        <tbody>
          {stats.read_models.map((model) => (
            <tr key={model.read_model} className={(model.active?.events_behind ?? 0) > 0 ? "warn" : undefined}>
              <th scope="row">{model.read_model}</th>
              <td>{model.active ? <StatusBadge status={model.active.state} /> : "–"}</td>
              <td>{formatNumber(model.active?.events_behind)}</td>
              <td>{formatNumber(model.active?.seconds_behind, 3)}</td>
              <td>{model.building ? `${Math.round((model.progress ?? 0) * 100)}%` : "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <table>
        <caption>Queue depths</caption>
        <thead>
          <tr>
            <th scope="col">Queue</th>
            <th scope="col">Ready</th>
            <th scope="col">Delayed</th>
            <th scope="col">Dead</th>
          </tr>
        </thead>
        <tbody>
          {stats.queues.map((queue) => (
            <tr key={queue.queue} className={queue.dead > 0 ? "warn" : undefined}>
              <th scope="row">{queue.queue}</th>
              <td>{queue.ready}</td>
              <td>{queue.delayed}</td>
              <td>{queue.dead}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

// A column per hour, oldest first: a day of traffic in one line, each column named for screen
// readers and on hover.
function EventsPerHour({ events }: { events: PlatformStats["events"] }) {
  const most = Math.max(1, ...events.per_hour.map((hour) => hour.events));
  const time = (iso: string) => new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  const hours = events.per_hour;
  return (
    <figure className="hours">
      <figcaption>Events per hour ({events.total.toLocaleString()} in all)</figcaption>
      <ol>
        {hours.map((hour) => {
          const label = `${time(hour.hour)}: ${hour.events.toLocaleString()} events`;
          return (
            <li key={hour.hour} title={label}>
              <span className="column" style={{ height: `${Math.max(hour.events > 0 ? 4 : 1, Math.round((hour.events / most) * 100))}%` }} aria-hidden="true" />
              <span className="sr-only">{label}</span>
            </li>
          );
        })}
      </ol>
      {hours.length > 0 && (
        <div className="hours-axis muted" aria-hidden="true">
          <span>{time(hours[0].hour)}</span>
          <span>{time(hours[hours.length - 1].hour)}</span>
        </div>
      )}
    </figure>
  );
}

function Workers({ workers }: { workers: PlatformStats["workers"] }) {
  return (
    <div className="scroll">
      <table>
        <caption>Workers</caption>
        <thead>
          <tr>
            <th scope="col">Process</th>
            <th scope="col">Queues</th>
            <th scope="col">CPU</th>
            <th scope="col">Memory</th>
            <th scope="col">Last seen</th>
          </tr>
        </thead>
        <tbody>
          {workers.map((worker) => (
            <tr key={`${worker.host}:${worker.pid}`}>
              <th scope="row">
                {worker.host}:{worker.pid}
              </th>
              <td>{worker.queues.join(", ")}</td>
              <td>{worker.cpu_percent.toFixed(0)}%</td>
              <td>{formatBytes(worker.memory_rss)}</td>
              <td>{formatTime(worker.seen_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Stats({ stats }: { stats: PlatformStats }) {
  const { database, redis, resources } = stats;
  return (
    <>
      <p className="muted">Measured {formatTime(stats.measured_at)}</p>
      <Lag stats={stats} />
      <Workers workers={stats.workers} />
      <EventsPerHour events={stats.events} />
      <div className="scroll">
        <Value value={{ resources, database, redis }} />
      </div>
    </>
  );
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
        stats.data && <Stats stats={stats.data} />
      )}
    </section>
  );
}
