// The typed fetch client: unwraps the API's envelope `{success, data, error, meta}`, turns
// failures into ApiError (with the fields a 4xx names), and refreshes the access token when it
// has expired, once for all requests waiting on it (a refresh token works only once).
import { getSession, setSession } from "./session";
import type { PageMeta, TokenPair } from "./types";

export const API = "/api/v2";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  // Field name → why it was refused (validation errors).
  readonly fields: Record<string, string>;
  readonly meta: Record<string, unknown>;

  constructor(status: number, message: string, meta: Record<string, unknown> = {}) {
    super(message);
    this.status = status;
    this.meta = meta;
    this.code = typeof meta.code === "string" ? meta.code : "error";
    this.fields = {};
    const fields = Array.isArray(meta.fields) ? meta.fields : [];
    for (const entry of fields as { field?: string | null; message?: string | null }[]) {
      if (entry.field) this.fields[leafName(entry.field)] = entry.message ?? "is not valid";
    }
  }
}

// "hyperparameters.epochs" or "tags[0]" are shown next to the input named by their last part.
function leafName(field: string): string {
  return field.replace(/\[\d+\]$/, "").split(".").pop() ?? field;
}

interface Envelope<T> {
  success: boolean;
  data?: T | null;
  error?: string | null;
  meta?: Record<string, unknown> | null;
}

// Refresh this long before the access token expires, so requests never meet an expired one.
const REFRESH_MARGIN_MS = 30_000;
let refreshing: Promise<boolean> | null = null;

export function refreshSession(): Promise<boolean> {
  const session = getSession();
  if (!session) return Promise.resolve(false);
  refreshing ??= (async () => {
    try {
      const response = await fetch(`${API}/auth/refresh`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ refresh_token: session.refreshToken }),
      });
      if (!response.ok) {
        // Only a refusal ends the session; a network blip keeps it for the next try.
        if (response.status === 401 || response.status === 403) setSession(null);
        return false;
      }
      const body = (await response.json()) as Envelope<TokenPair>;
      if (body.data) setSession(body.data);
      return Boolean(body.data);
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

export async function accessToken(): Promise<string | null> {
  const session = getSession();
  if (!session) return null;
  if (session.expiresAt - Date.now() < REFRESH_MARGIN_MS) await refreshSession();
  return getSession()?.accessToken ?? null;
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  query?: Record<string, string | number | boolean | null | undefined>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export function url(path: string, query?: RequestOptions["query"]): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return `${API}${path}${text ? `?${text}` : ""}`;
}

export async function authorisedFetch(
  target: string,
  init: RequestInit = {},
  retried = false,
): Promise<Response> {
  const token = await accessToken();
  const headers = new Headers(init.headers);
  if (token) headers.set("authorization", `Bearer ${token}`);
  const response = await fetch(target, { ...init, headers });
  if (response.status === 401 && token && !retried && (await refreshSession())) {
    return authorisedFetch(target, init, true);
  }
  return response;
}

// The position of the newest event this page knows of, from the live stream or its own writes.
// Reads ask for read models that have caught up with it (`after`), so a page never shows the
// state from before an event it has seen.
let seenPosition = 0;

export function noteEventPosition(position: number): void {
  seenPosition = Math.max(seenPosition, position);
}

async function send<T>(path: string, options: RequestOptions): Promise<Envelope<T>> {
  const headers: Record<string, string> = { ...options.headers };
  const method = options.method ?? "GET";
  const query = method === "GET" && seenPosition > 0 ? { after: seenPosition, ...options.query } : options.query;
  let body: BodyInit | undefined;
  if (options.body instanceof FormData) body = options.body;
  else if (options.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  const response = await authorisedFetch(url(path, query), {
    method,
    headers,
    body,
    signal: options.signal,
  });
  const envelope = await parseEnvelope<T>(response);
  // A write's event position: later reads wait for read models that include it.
  if (typeof envelope.meta?.position === "number") noteEventPosition(envelope.meta.position);
  return envelope;
}

export async function parseEnvelope<T>(response: Response): Promise<Envelope<T>> {
  let envelope: Envelope<T> | null = null;
  try {
    envelope = (await response.json()) as Envelope<T>;
  } catch {
    envelope = null;
  }
  if (!response.ok || !envelope?.success) {
    throw new ApiError(
      response.status,
      envelope?.error ?? `the server answered ${response.status} ${response.statusText}`,
      envelope?.meta ?? {},
    );
  }
  return envelope;
}

export async function request<T>(path: string, options: RequestOptions = {}): Promise<T> {
  return (await send<T>(path, options)).data as T;
}

export async function requestPage<T>(
  path: string,
  options: RequestOptions = {},
): Promise<{ items: T[]; meta: PageMeta }> {
  const envelope = await send<T[]>(path, options);
  return { items: envelope.data ?? [], meta: envelope.meta as unknown as PageMeta };
}
