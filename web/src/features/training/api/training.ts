import { keepPreviousData, queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { request, requestPage } from "../../../api/client";
import type { Job, JobStatus, LogLine, LossCurve, Template, TrainingSubmit } from "../../../api/types";

export const templatesQuery = queryOptions({
  queryKey: ["templates"],
  queryFn: () => request<Template[]>("/training/templates"),
  staleTime: Infinity,
});

export interface JobFilters {
  project_id?: string;
  experiment_id?: string;
  status?: string;
  page?: number;
}

export const jobsQuery = (filters: JobFilters) =>
  queryOptions({
    queryKey: ["jobs", "list", filters],
    queryFn: () => requestPage<Job>("/training/jobs", { query: { limit: 20, ...filters } }),
    placeholderData: keepPreviousData,
  });

export const jobQuery = (id: string) =>
  queryOptions({ queryKey: ["jobs", id], queryFn: () => request<Job>(`/training/jobs/${id}`) });

export const jobStatusQuery = (id: string) =>
  queryOptions({ queryKey: ["jobs", id, "status"], queryFn: () => request<JobStatus>(`/training/jobs/${id}/status`) });

export const jobLogsQuery = (id: string) =>
  queryOptions({
    queryKey: ["jobs", id, "logs"],
    queryFn: () => requestPage<LogLine>(`/training/jobs/${id}/logs`, { query: { limit: 100 } }),
  });

export const lossCurveQuery = (id: string) =>
  queryOptions({
    queryKey: ["jobs", id, "loss"],
    queryFn: () => request<LossCurve>("/metrics/loss", { query: { job_id: id, points: 500 } }),
  });

export function useTemplates() {
  return useQuery(templatesQuery);
}

export function useJobs(filters: JobFilters) {
  return useQuery(jobsQuery(filters));
}

export function useJob(id: string) {
  return useQuery(jobQuery(id));
}

export function useJobStatus(id: string) {
  return useQuery(jobStatusQuery(id));
}

export function useJobLogs(id: string) {
  return useQuery(jobLogsQuery(id));
}

export function useLossCurve(id: string) {
  return useQuery(lossCurveQuery(id));
}

export function useSubmitJob() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (input: Partial<TrainingSubmit> & Pick<TrainingSubmit, "project_id" | "template" | "dataset_id">) =>
      // The answer names the job; its page reads the job's full view.
      request<Pick<Job, "id">>("/training/submit", { method: "POST", body: input }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["jobs"] }),
  });
}

export function useCancelJob(id: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: () => request<Job>(`/training/jobs/${id}/cancel`, { method: "POST" }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["jobs"] }),
  });
}
