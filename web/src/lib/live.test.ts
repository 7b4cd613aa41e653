import { setSession } from "../api/session";
import { LiveConnection, type LiveEvent } from "./live";

function streamOf(text: string): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
}

const progressed = (position: number) =>
  `id: ${position}\nevent: JobProgressed\ndata: ${JSON.stringify({ channel: "job:j1", stream_id: "job-j1", type: "JobProgressed", position, recorded_at: "2026-01-01T00:00:00Z", data: {} })}\n\n`;

describe("the live connection", () => {
  beforeEach(() => setSession({ access_token: "token", refresh_token: "r", token_type: "bearer", expires_in: 900 }));
  afterEach(() => {
    vi.unstubAllGlobals();
    setSession(null);
  });

  it("opens one stream for all held channels, shows reconnecting after a drop, and resumes after the last event", async () => {
    const requests: { url: string; headers: Headers }[] = [];
    let answered = 0;
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string, init?: RequestInit) => {
        requests.push({ url, headers: new Headers(init?.headers) });
        answered += 1;
        // The first stream delivers two events and drops; the second stays open.
        if (answered === 1) return streamOf(`retry: 20\n\n${progressed(6)}${progressed(7)}`);
        return new Response(new ReadableStream(), { status: 200 });
      }),
    );
    const live = new LiveConnection();
    const events: LiveEvent[] = [];
    const states: string[] = [];
    live.listen((event) => events.push(event));
    live.onState(() => states.push(live.state));
    live.hold("notifications");
    live.hold("job:j1");
    live.start();

    await vi.waitFor(() => expect(requests).toHaveLength(2), { timeout: 5_000 });
    live.stop();

    expect(requests[0].url).toBe("/api/v2/streams?channels=job%3Aj1%2Cnotifications");
    expect(requests[0].headers.get("authorization")).toBe("Bearer token");
    expect(requests[0].headers.get("last-event-id")).toBeNull();
    expect(requests[1].headers.get("last-event-id")).toBe("7");
    expect(events.map((event) => (event.kind === "event" ? event.message.position : null))).toEqual([6, 7]);
    expect(states).toEqual(["connecting", "open", "reconnecting", "open", "idle"]);
  });

  it("reconnects with the new set when a page adds a channel", async () => {
    const urls: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) => {
        urls.push(url);
        return new Response(new ReadableStream(), { status: 200 });
      }),
    );
    const live = new LiveConnection();
    live.hold("notifications");
    live.start();
    await vi.waitFor(() => expect(urls).toHaveLength(1));
    const release = live.hold("project:p1");
    await vi.waitFor(() => expect(urls).toHaveLength(2));
    release();
    await vi.waitFor(() => expect(urls).toHaveLength(3));
    live.stop();
    expect(urls.map((url) => decodeURIComponent(url.split("channels=")[1]))).toEqual([
      "notifications",
      "notifications,project:p1",
      "notifications",
    ]);
  });
});

describe("a channel the server refuses", () => {
  beforeEach(() => setSession({ access_token: "token", refresh_token: "r", token_type: "bearer", expires_in: 900 }));
  afterEach(() => {
    vi.unstubAllGlobals();
    setSession(null);
  });

  it("is left out so the other channels stay live, until a page holds it again", async () => {
    const urls: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) => {
        urls.push(decodeURIComponent(url));
        if (url.includes("project%3Agone")) {
          return Response.json(
            { success: false, data: null, error: "you cannot read project:gone: there is no such project, or you are not a member of its project", meta: { code: "not_found" } },
            { status: 404 },
          );
        }
        return new Response(new ReadableStream(), { status: 200 });
      }),
    );
    const live = new LiveConnection();
    live.hold("notifications");
    const release = live.hold("project:gone");
    live.start();
    await vi.waitFor(() => expect(urls).toHaveLength(2), { timeout: 5_000 });
    expect(urls[1]).toBe("/api/v2/streams?channels=notifications");
    await vi.waitFor(() => expect(live.state).toBe("open"));

    release();
    live.hold("project:gone");
    await vi.waitFor(() => expect(urls.length).toBeGreaterThanOrEqual(3), { timeout: 5_000 });
    expect(urls[2]).toBe("/api/v2/streams?channels=notifications,project:gone");
    live.stop();
  });
});
