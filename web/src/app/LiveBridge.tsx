import { useQueryClient, type QueryClient } from "@tanstack/react-query";
import { useEffect } from "react";
import { noteEventPosition } from "../api/client";
import { live, type LiveMessage } from "../lib/live";
import { useLiveChannel, useLiveEvents } from "../lib/useLive";
import { useMe } from "../features/auth/api/session";

// The query keys an event can change, by the prefix of its type.
const AFFECTED: [string, string[][]][] = [
  ["Project", [["projects"], ["audit"]]],
  ["Member", [["projects"], ["audit"]]],
  ["Experiment", [["experiments"], ["projects"], ["audit"]]],
  ["Dataset", [["datasets"], ["projects"], ["audit"]]],
  ["Model", [["models"], ["projects"], ["audit"]]],
  ["Job", [["jobs"], ["projects"], ["audit"]]],
  ["Metrics", [["jobs"]]],
  ["User", [["users"], ["me"], ["audit"]]],
  ["Role", [["roles"], ["audit"]]],
  ["Notification", [["notifications"]]],
];

export function invalidateFor(client: QueryClient, message: LiveMessage): void {
  noteEventPosition(message.position);
  if (message.type === "notification" || message.channel.startsWith("notifications")) {
    void client.invalidateQueries({ queryKey: ["notifications"] });
  }
  for (const [prefix, keys] of AFFECTED) {
    if (message.type.startsWith(prefix)) keys.forEach((queryKey) => void client.invalidateQueries({ queryKey }));
  }
  if (message.stream_id) void client.invalidateQueries({ queryKey: ["history"] });
}

// Opens the app's live connection while someone is logged in, and turns its events into cache
// invalidations. Admins follow every event; others, the channels their pages hold.
export function LiveBridge() {
  const client = useQueryClient();
  const me = useMe();
  useEffect(() => {
    live.start();
    return () => live.stop();
  }, []);
  useLiveChannel("notifications");
  useLiveChannel(me.data?.system_role === "admin" ? "admin" : null);
  useLiveEvents((event) => {
    if (event.kind === "event") invalidateFor(client, event.message);
  });
  return null;
}
