import { queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { request, requestPage } from "../../../api/client";
import type { Model, ModelUpdate } from "../../../api/types";

export const modelsQuery = (projectId: string) =>
  queryOptions({
    queryKey: ["models", "list", projectId],
    queryFn: () => requestPage<Model>("/models", { query: { project_id: projectId, limit: 100 } }),
  });

export const modelQuery = (id: string) =>
  queryOptions({ queryKey: ["models", id], queryFn: () => request<Model>(`/models/${id}`) });

export function useModels(projectId: string) {
  return useQuery({ ...modelsQuery(projectId), enabled: Boolean(projectId) });
}

export function useModel(id: string) {
  return useQuery(modelQuery(id));
}

export function useUpdateModel(id: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (input: ModelUpdate) => request<Model>(`/models/${id}`, { method: "PUT", body: input }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["models"] }),
  });
}
