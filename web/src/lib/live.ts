// One live connection for the whole app: GET /api/v2/streams with every channel some part of
// the page wants. When the set changes, or the connection drops, it reconnects with
// Last-Event-ID so nothing is missed; the state ("reconnecting") is shown in the header.
import { authorisedFetch, refreshSession, url } from "../api/client";
import { createSseParser, readSse } from "./sse";

export interface LiveMessage {
  channel: string;
  stream_id: string;
  type: string;
  position: number;
  recorded_at: string;
  data: Record<string, unknown>;
}

export type LiveEvent =
  | { kind: "event"; id: string | null; message: LiveMessage }
  | { kind: "gpu"; sample: Record<string, unknown> };

export type LiveState = "idle" | "connecting" | "open" | "reconnecting";

const CHANNEL_SETTLE_MS = 30;
const MAX_BACKOFF_MS = 15_000;

export class LiveConnection {
  private counts = new Map<string, number>();
  // Channels the server refused (a project deleted, or left): the stream opens without them
  // instead of failing for everyone, until a page holds them afresh.
  private refused = new Set<string>();
  private listeners = new Set<(event: LiveEvent) => void>();
  private stateListeners = new Set<() => void>();
  private controller: AbortController | null = null;
  private openChannels = "";
  private lastEventId: string | null = null;
  private failures = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running = false;
  state: LiveState = "idle";

  start(): void {
    this.running = true;
    this.schedule(0);
  }

  stop(): void {
    this.running = false;
    this.controller?.abort();
    this.controller = null;
    this.openChannels = "";
    if (this.timer) clearTimeout(this.timer);
    this.setState("idle");
  }

  // Adds a channel for as long as the returned function is not called.
  hold(channel: string): () => void {
    this.refused.delete(channel);
    this.counts.set(channel, (this.counts.get(channel) ?? 0) + 1);
    this.channelsChanged();
    return () => {
      const left = (this.counts.get(channel) ?? 1) - 1;
      if (left > 0) this.counts.set(channel, left);
      else this.counts.delete(channel);
      this.channelsChanged();
    };
  }

  listen(listener: (event: LiveEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onState(listener: () => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  private wanted(): string {
    return [...this.counts.keys()].filter((channel) => !this.refused.has(channel)).sort().join(",");
  }

  private channelsChanged(): void {
    if (this.running && this.wanted() !== this.openChannels) this.schedule(CHANNEL_SETTLE_MS);
  }

  private setState(state: LiveState): void {
    if (state === this.state) return;
    this.state = state;
    this.stateListeners.forEach((listener) => listener());
  }

  private schedule(delay: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.connect(), delay);
  }

  private async connect(): Promise<void> {
    this.timer = null;
    const channels = this.wanted();
    this.controller?.abort();
    if (!this.running || !channels) return;
    const controller = (this.controller = new AbortController());
    this.openChannels = channels;
    if (this.state !== "reconnecting") this.setState("connecting");
    const parser = createSseParser();
    let retryAfter = 1_000;
    try {
      const headers: Record<string, string> = { accept: "text/event-stream" };
      if (this.lastEventId) headers["last-event-id"] = this.lastEventId;
      const response = await authorisedFetch(url("/streams", { channels }), {
        headers,
        signal: controller.signal,
      });
      if (response.status === 400 && this.lastEventId) {
        // The event it would resume after is unknown here (another database): start afresh.
        this.lastEventId = null;
      }
      if (response.status === 401) await refreshSession();
      if ((response.status === 403 || response.status === 404) && (await this.refuse(response, channels))) {
        this.schedule(0);
        return;
      }
      if (!response.ok || !response.body) throw new Error(`stream refused: ${response.status}`);
      this.failures = 0;
      this.setState("open");
      await readSse(
        response.body,
        (message) => {
          if (message.event === "gpu") {
            this.emit({ kind: "gpu", sample: JSON.parse(message.data) as Record<string, unknown> });
            return;
          }
          if (message.id) this.lastEventId = message.id;
          this.emit({ kind: "event", id: message.id, message: JSON.parse(message.data) as LiveMessage });
        },
        parser,
      );
      retryAfter = parser.retry() ?? retryAfter;
    } catch {
      if (controller.signal.aborted) return;
      this.failures += 1;
      retryAfter = Math.min(MAX_BACKOFF_MS, 1_000 * 2 ** Math.min(this.failures, 4));
    }
    if (controller.signal.aborted || !this.running) return;
    this.setState("reconnecting");
    this.openChannels = "";
    this.schedule(retryAfter);
  }

  // The API names the channel it refuses ("you cannot read project:…: …"); true when that is
  // one of ours, now left out.
  private async refuse(response: Response, channels: string): Promise<boolean> {
    let text = "";
    try {
      text = String(((await response.json()) as { error?: unknown }).error ?? "");
    } catch {
      return false;
    }
    const channel = channels.split(",").find((name) => text.includes(`read ${name}:`));
    if (!channel) return false;
    this.refused.add(channel);
    return true;
  }

  private emit(event: LiveEvent): void {
    this.listeners.forEach((listener) => listener(event));
  }
}

export const live = new LiveConnection();
