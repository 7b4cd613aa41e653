import { createSseParser } from "./sse";

describe("the server-sent events parser", () => {
  it("completes a message only at its blank line, across chunks", () => {
    const parser = createSseParser();
    expect(parser.push("id: 7\nevent: JobProgressed\nda")).toEqual([]);
    expect(parser.push('ta: {"a":1}\n\n')).toEqual([{ id: "7", event: "JobProgressed", data: '{"a":1}' }]);
  });

  it("ignores comments (heartbeats) and remembers the retry advice", () => {
    const parser = createSseParser();
    expect(parser.push("retry: 1000\n\n: keep-alive\n\n")).toEqual([]);
    expect(parser.retry()).toBe(1000);
  });

  it("joins multi-line data, accepts CRLF, and names unnamed events `message`", () => {
    const parser = createSseParser();
    expect(parser.push("data: one\r\ndata: two\r\n\r\n")).toEqual([{ id: null, event: "message", data: "one\ntwo" }]);
  });

  it("gives a GPU sample without an id", () => {
    const parser = createSseParser();
    const [message] = parser.push('event: gpu\ndata: {"host":"h"}\n\n');
    expect(message.id).toBeNull();
    expect(message.event).toBe("gpu");
  });
});
