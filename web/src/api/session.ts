// The logged-in session: tokens kept in localStorage so a reload stays logged in, with
// subscribers so React re-renders on login, refresh and logout.
import type { TokenPair } from "./types";

export interface Session {
  accessToken: string;
  refreshToken: string;
  // Epoch milliseconds when the access token stops working.
  expiresAt: number;
}

const STORAGE_KEY = "aiplatform.session";
const listeners = new Set<() => void>();

function read(): Session | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

let current: Session | null = read();

export function getSession(): Session | null {
  return current;
}

// Whether the session ended because its user logged out (not because it expired): the login
// page then starts afresh instead of returning to the page the last user was on.
let loggedOut = false;

export function endedByLogout(): boolean {
  return loggedOut;
}

export function setSession(tokens: TokenPair | null, reason: "logout" | null = null): void {
  loggedOut = tokens === null && reason === "logout";
  current = tokens
    ? {
        accessToken: tokens.access_token,
        refreshToken: tokens.refresh_token,
        expiresAt: Date.now() + tokens.expires_in * 1000,
      }
    : null;
  if (current) localStorage.setItem(STORAGE_KEY, JSON.stringify(current));
  else localStorage.removeItem(STORAGE_KEY);
  listeners.forEach((listener) => listener());
}

export function subscribeSession(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
