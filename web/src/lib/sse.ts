// A server-sent events parser for a fetch() body: EventSource cannot send the Authorization
// header the API needs, so the stream is read by hand.

export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

export interface SseParser {
  // Feeds decoded text; returns the messages it completed.
  push(text: string): SseMessage[];
  // The server's `retry:` advice, in milliseconds, if it gave one.
  retry(): number | null;
}

export function createSseParser(): SseParser {
  let buffer = "";
  let retry: number | null = null;
  let id: string | null = null;
  let event = "";
  let data: string[] = [];

  function line(text: string, out: SseMessage[]): void {
    if (text === "") {
      if (data.length > 0 || event) out.push({ id, event: event || "message", data: data.join("\n") });
      event = "";
      data = [];
      id = null;
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
    else if (field === "id") id = value;
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }

  return {
    push(text: string): SseMessage[] {
      buffer += text;
      const out: SseMessage[] = [];
      let end = buffer.search(/\r\n|\r|\n/);
      while (end !== -1) {
        const newline = buffer.startsWith("\r\n", end) ? 2 : 1;
        line(buffer.slice(0, end), out);
        buffer = buffer.slice(end + newline);
        end = buffer.search(/\r\n|\r|\n/);
      }
      return out;
    },
    retry: () => retry,
  };
}

// Reads a streaming response to its end, handing each message over as it completes.
export async function readSse(
  body: ReadableStream<Uint8Array>,
  onMessage: (message: SseMessage) => void,
  parser: SseParser = createSseParser(),
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    for (const message of parser.push(decoder.decode(value, { stream: true }))) onMessage(message);
  }
}
