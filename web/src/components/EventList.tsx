import type { HistoryEvent } from "../api/types";
import { formatTime } from "../lib/format";

// A stream's events, oldest first, each with the data it recorded.
export function EventList({ events }: { events: HistoryEvent[] }) {
  return (
    <ol className="timeline">
      {events.map((event) => (
        <li key={event.position}>
          <div>
            <strong>{event.type}</strong> <span className="muted">v{event.version} · {formatTime(event.recorded_at)}</span>
          </div>
          <details>
            <summary>data</summary>
            <pre>{JSON.stringify(event.data, null, 2)}</pre>
          </details>
        </li>
      ))}
    </ol>
  );
}
