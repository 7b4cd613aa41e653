import { keepPreviousData, queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { ApiError, request, requestPage } from "../../../api/client";
import type { AuditEntry, HistoryEvent, PlatformStats, Role, User, UserCreate, UserUpdate } from "../../../api/types";

export const usersQuery = (q: string, page: number) =>
  queryOptions({
    queryKey: ["users", { q, page }],
    queryFn: () => requestPage<User>("/users", { query: { q, page, limit: 20 } }),
    placeholderData: keepPreviousData,
  });

export const rolesQuery = queryOptions({ queryKey: ["roles"], queryFn: () => requestPage<Role>("/roles", { query: { limit: 100 } }) });

export interface AuditFilters {
  actor_id?: string;
  resource_type?: string;
  resource_id?: string;
  since?: string;
  until?: string;
  page?: number;
}

export const auditQuery = (filters: AuditFilters) =>
  queryOptions({
    queryKey: ["audit", filters],
    queryFn: () => requestPage<AuditEntry>("/audit", { query: { limit: 50, ...filters } }),
    placeholderData: keepPreviousData,
  });

// The plural path segment of each resource type that has a `…/{id}/history` route.
const HISTORY_PATHS: Record<string, string> = {
  project: "projects",
  experiment: "experiments",
  dataset: "datasets",
  model: "models",
  job: "training/jobs",
  user: "users",
};

export function historyPath(resourceType: string, id: string): string | null {
  const base = HISTORY_PATHS[resourceType];
  return base ? `/${base}/${id}/history` : null;
}

export const resourceHistoryQuery = (resourceType: string, id: string) =>
  queryOptions({
    queryKey: ["history", resourceType, id],
    queryFn: () => requestPage<HistoryEvent>(historyPath(resourceType, id) ?? "", { query: { limit: 100 } }),
    enabled: historyPath(resourceType, id) !== null,
  });

// GET admin/stats is newer than the rest of the API: a server without it answers 404, which
// the page shows as "not available" instead of an error.
export const adminStatsQuery = queryOptions({
  queryKey: ["admin", "stats"],
  queryFn: async () => {
    try {
      return await request<PlatformStats>("/admin/stats");
    } catch (error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 405)) return null;
      throw error;
    }
  },
});

export function useUsers(q: string, page: number) {
  return useQuery(usersQuery(q, page));
}

export function useRoles() {
  return useQuery(rolesQuery);
}

export function useAudit(filters: AuditFilters) {
  return useQuery(auditQuery(filters));
}

export function useResourceHistory(resourceType: string, id: string) {
  return useQuery(resourceHistoryQuery(resourceType, id));
}

export function useAdminStats() {
  return useQuery(adminStatsQuery);
}

export function useCreateUser() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (input: UserCreate) => request<User>("/users", { method: "POST", body: input }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["users"] }),
  });
}

export function useUpdateUser() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: ({ id, ...input }: UserUpdate & { id: string }) => request<User>(`/users/${id}`, { method: "PUT", body: input }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["users"] }),
  });
}
