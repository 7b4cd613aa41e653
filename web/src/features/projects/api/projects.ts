import { keepPreviousData, queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { request, requestPage } from "../../../api/client";
import type { DirectoryEntry, HistoryEvent, Project, ProjectCreate, ProjectUpdate } from "../../../api/types";

export interface ProjectFilters {
  q?: string;
  status?: string;
  tag?: string;
  page?: number;
  limit?: number;
}

export const projectsQuery = (filters: ProjectFilters) =>
  queryOptions({
    queryKey: ["projects", "list", filters],
    queryFn: () => requestPage<Project>("/projects", { query: { limit: 20, ...filters } }),
    placeholderData: keepPreviousData,
  });

export const projectQuery = (id: string) =>
  queryOptions({ queryKey: ["projects", id], queryFn: () => request<Project>(`/projects/${id}`) });

export const projectHistoryQuery = (id: string) =>
  queryOptions({
    queryKey: ["projects", id, "history"],
    queryFn: () => requestPage<HistoryEvent>(`/projects/${id}/history`, { query: { limit: 100 } }),
  });

export function useProjects(filters: ProjectFilters) {
  return useQuery(projectsQuery(filters));
}

export function useProject(id: string) {
  return useQuery(projectQuery(id));
}

export function useProjectHistory(id: string) {
  return useQuery(projectHistoryQuery(id));
}

function useProjectMutation<Input, Output>(fn: (input: Input) => Promise<Output>) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: fn,
    onSuccess: () => client.invalidateQueries({ queryKey: ["projects"] }),
  });
}

export function useCreateProject() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (input: ProjectCreate) => request<Project>("/projects", { method: "POST", body: input }),
    onSuccess: (project) => {
      // The new project's page shows it at once, from the write's answer.
      client.setQueryData(projectQuery(project.id).queryKey, project);
      return client.invalidateQueries({ queryKey: ["projects", "list"] });
    },
  });
}

export function useUpdateProject(id: string) {
  return useProjectMutation((input: ProjectUpdate) => request<Project>(`/projects/${id}`, { method: "PUT", body: input }));
}

export function useArchiveProject(id: string) {
  return useProjectMutation(() => request<Project>(`/projects/${id}/archive`, { method: "POST" }));
}

export function useDeleteProject(id: string) {
  return useProjectMutation(() => request<unknown>(`/projects/${id}`, { method: "DELETE" }));
}

export function useGrantMember(id: string) {
  return useProjectMutation((input: { user_id: string; role: string }) =>
    request<Project>(`/projects/${id}/members`, { method: "POST", body: input }),
  );
}

export function useRevokeMember(id: string) {
  return useProjectMutation((userId: string) => request<Project>(`/projects/${id}/members/${userId}`, { method: "DELETE" }));
}

// Users by name, for picking a member: any logged-in user may search (names only).
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
