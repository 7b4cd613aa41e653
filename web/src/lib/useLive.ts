import { useEffect, useRef, useSyncExternalStore } from "react";
import { live, type LiveEvent, type LiveState } from "./live";

export function useLiveState(): LiveState {
  return useSyncExternalStore(
    (listener) => live.onState(listener),
    () => live.state,
  );
}

// Keeps `channel` in the app's one live connection while the component is shown.
export function useLiveChannel(channel: string | null | undefined): void {
  useEffect(() => (channel ? live.hold(channel) : undefined), [channel]);
}

export function useLiveEvents(listener: (event: LiveEvent) => void): void {
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(() => live.listen((event) => latest.current(event)), []);
}
