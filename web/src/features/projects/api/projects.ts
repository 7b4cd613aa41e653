import { keepPreviousData, queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { request, requestPage } from "../../../api/client";
import type { HistoryEvent, Project, ProjectCreate, ProjectUpdate } from "../../../api/types";
import { useRoles } from "../../admin/api/admin";
import { useMe } from "../../auth/api/session";

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
  return useQuery({ ...projectQuery(id), enabled: Boolean(id) });
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


// Whether the logged-in user may do `permission` (e.g. "member:manage") in a project whose
// members are given: admins may do anything; others, what their project role grants. While
// that is not known yet the answer is yes: the API decides in the end, and says why it refuses.
export function useProjectPermission(members: Record<string, string> | undefined, permission: string): boolean {
  const me = useMe();
  const roles = useRoles();
  if (!me.data || !roles.data || !members) return true;
  if (me.data.system_role === "admin") return true;
  const role = roles.data.items.find((r) => r.name === members[me.data.id]);
  return role?.permissions.includes(permission) ?? false;
}
