import { queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { accessToken, ApiError, noteEventPosition, request, requestPage, url } from "../../../api/client";
import type { Dataset, DatasetDetail, DatasetVersion } from "../../../api/types";

export const datasetsQuery = (projectId: string) =>
  queryOptions({
    queryKey: ["datasets", "list", projectId],
    queryFn: () => requestPage<Dataset>("/datasets", { query: { project_id: projectId, limit: 100 } }),
  });

export const datasetQuery = (id: string) =>
  queryOptions({ queryKey: ["datasets", id], queryFn: () => request<DatasetDetail>(`/datasets/${id}`) });

export const datasetVersionQuery = (id: string, version: string) =>
  queryOptions({
    queryKey: ["datasets", id, "version", version],
    queryFn: () => request<DatasetVersion>(`/datasets/${id}/versions/${version}`),
  });

export function useDatasets(projectId: string) {
  return useQuery({ ...datasetsQuery(projectId), enabled: Boolean(projectId) });
}

export function useDataset(id: string) {
  return useQuery({ ...datasetQuery(id), enabled: Boolean(id) });
}

export function useDatasetVersion(id: string, version: string | null | undefined) {
  return useQuery({ ...datasetVersionQuery(id, version ?? ""), enabled: Boolean(version) });
}

export interface UploadInput {
  file: File;
  fields: Record<string, string>;
  // POST /datasets for a new dataset, /datasets/{id}/versions for a new version.
  path: string;
  onProgress: (fraction: number) => void;
}

// XMLHttpRequest rather than fetch: only it reports upload progress.
export async function upload({ file, fields, path, onProgress }: UploadInput): Promise<DatasetDetail> {
  const token = await accessToken();
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) if (value) form.append(name, value);
  form.append("file", file);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url(path));
    if (token) xhr.setRequestHeader("authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onerror = () => reject(new ApiError(0, "the upload failed: the server could not be reached"));
    xhr.onload = () => {
      let body: { success?: boolean; data?: DatasetDetail; error?: string; meta?: Record<string, unknown> } = {};
      try {
        body = JSON.parse(xhr.responseText) as typeof body;
      } catch {
        body = {};
      }
      if (xhr.status >= 200 && xhr.status < 300 && body.data) {
        if (typeof body.meta?.position === "number") noteEventPosition(body.meta.position);
        resolve(body.data);
      }
      else reject(new ApiError(xhr.status, body.error ?? `the upload failed (${xhr.status})`, body.meta ?? {}));
    };
    xhr.send(form);
  });
}

export function useUpload() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: upload,
    onSuccess: (answer, input) => {
      // A new dataset's page shows it at once, from the write's answer; a new version changes
      // the dataset the page already shows.
      if (input.path !== "/datasets") return client.invalidateQueries({ queryKey: ["datasets"] });
      client.setQueryData(datasetQuery(answer.id).queryKey, answer);
      return client.invalidateQueries({ queryKey: ["datasets", "list"] });
    },
  });
}
