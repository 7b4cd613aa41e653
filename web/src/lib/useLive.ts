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

// Keeps each of `channels` in the live connection while the component is shown; the set is
// compared by value, so a re-render with the same channels changes nothing.
export function useLiveChannels(channels: string[]): void {
  const key = [...new Set(channels)].sort().join(",");
  useEffect(() => {
    if (!key) return undefined;
    const releases = key.split(",").map((channel) => live.hold(channel));
    return () => releases.forEach((release) => release());
  }, [key]);
}
