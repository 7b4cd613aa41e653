import { useSearchParams } from "react-router";
import type { HistoryEvent } from "../api/types";
import { AsOfView } from "./AsOfView";
import { EventList } from "./EventList";

// A resource's history with time travel: picking an event shows the resource as it was then.
// The chosen position is kept in the address (`?as_of=`), so the view can be linked to.
export function TimeTravelHistory({ events, resourcePath }: { events: HistoryEvent[]; resourcePath: string }) {
  const [params, setParams] = useSearchParams();
  const raw = params.get("as_of");
  const position = raw && /^\d+$/.test(raw) ? Number(raw) : null;
  const chosen = events.find((event) => event.position === position);

  function go(next: number | null) {
    const updated = new URLSearchParams(params);
    if (next === null) updated.delete("as_of");
    else updated.set("as_of", String(next));
    setParams(updated, { replace: true });
  }

  return (
    <div className={position !== null ? "columns history" : "history"}>
      <EventList events={events} selected={position} onViewAsOf={(event) => go(event.position === position ? null : event.position)} />
      {position !== null && <AsOfView path={resourcePath} position={position} version={chosen?.version} onClose={() => go(null)} />}
    </div>
  );
}
