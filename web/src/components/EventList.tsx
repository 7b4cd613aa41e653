import type { HistoryEvent } from "../api/types";
import { formatTime } from "../lib/format";

interface EventListProps {
  events: HistoryEvent[];
  // With these, each event offers to show the resource as it was right after it.
  selected?: number | null;
  onViewAsOf?: (event: HistoryEvent) => void;
}

// A stream's events, oldest first, each with the data it recorded.
export function EventList({ events, selected, onViewAsOf }: EventListProps) {
  return (
    <ol className="timeline">
      {events.map((event) => (
        <li key={event.position} className={event.position === selected ? "selected" : undefined}>
          <div className="event-head">
            <span>
              <strong>{event.type}</strong> <span className="muted">v{event.version} · {formatTime(event.recorded_at)}</span>
            </span>
            {onViewAsOf && (
              <button type="button" className="link" aria-pressed={event.position === selected} onClick={() => onViewAsOf(event)}>
                view as of v{event.version}
              </button>
            )}
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
