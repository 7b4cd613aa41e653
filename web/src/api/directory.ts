// The user directory: names of users for anyone logged in (GET users/directory), to pick a
// user by name and to show names where the API gives ids.
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { request } from "./client";
import type { DirectoryEntry } from "./types";

// Users whose username or full name contains `q`.
export function useUserSearch(q: string) {
  return useQuery({
    queryKey: ["users", "directory", "search", q],
    queryFn: () => request<DirectoryEntry[]>("/users/directory", { query: { q, limit: 8 } }),
    enabled: q.trim().length > 0,
    placeholderData: keepPreviousData,
  });
}

// The names of the given user ids (a project's members are kept by id).
export function useUserNames(ids: string[]) {
  const sorted = [...ids].sort();
  return useQuery({
    queryKey: ["users", "directory", "ids", sorted],
    queryFn: async () => {
      const entries = await request<DirectoryEntry[]>("/users/directory", { query: { ids: sorted.join(","), limit: 100 } });
      return Object.fromEntries(entries.map((entry) => [entry.id, entry]));
    },
    enabled: sorted.length > 0,
    placeholderData: keepPreviousData,
  });
}
