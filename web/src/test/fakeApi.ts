import { envelope } from "./render";

export interface Call {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
}

type Answer = Response | ((call: Call) => Response);

// A fake of the API for component tests: answers "METHOD /path" (the path after /api/v2, without
// the query) from a table, records every call, and fails the test loudly on a request it does
// not expect. Register it with `vi.stubGlobal("fetch", api.fetch)`.
export function fakeApi(routes: Record<string, Answer>) {
  const calls: Call[] = [];
  const fetch = vi.fn(async (target: string | URL, init?: RequestInit) => {
    const address = new URL(String(target), "http://localhost");
    const method = init?.method ?? "GET";
    const path = address.pathname.replace(/^\/api\/v2/, "");
    const body = typeof init?.body === "string" ? (JSON.parse(init.body) as unknown) : init?.body;
    const call = { method, path, query: address.searchParams, body };
    calls.push(call);
    const answer = routes[`${method} ${path}`];
    if (!answer) return envelope(`no fake answer for ${method} ${path}`, null, 599);
    return typeof answer === "function" ? answer(call) : answer.clone();
  });
  return { fetch, calls, sent: (method: string, path: string) => calls.filter((c) => c.method === method && c.path === path) };
}

export const page = (items: unknown[]) => envelope(items, { total: items.length, page: 1, limit: 20, has_more: false });
