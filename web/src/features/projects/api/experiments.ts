import { queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { request, requestPage } from "../../../api/client";
import type { components } from "../../../api/schema";

type Schemas = components["schemas"];
export type Experiment = Schemas["ExperimentView"];
export type ExperimentCreate = Schemas["ExperimentCreate"];
export type ExperimentUpdate = Schemas["ExperimentUpdate"];

export const experimentsQuery = (projectId: string) =>
  queryOptions({
    queryKey: ["experiments", "list", projectId],
    queryFn: () => requestPage<Experiment>("/experiments", { query: { project_id: projectId, limit: 100 } }),
  });

export const experimentQuery = (id: string) =>
  queryOptions({ queryKey: ["experiments", id], queryFn: () => request<Experiment>(`/experiments/${id}`) });

export function useExperiments(projectId: string) {
  return useQuery(experimentsQuery(projectId));
}

export function useExperiment(id: string) {
  return useQuery(experimentQuery(id));
}

// Every write answers with the experiment as it now is: its page shows that at once instead of
// waiting for the read model, and the lists are read again.
function useExperimentWrite<Input>(fn: (input: Input) => Promise<Experiment>) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: fn,
    onSuccess: (experiment) => {
      client.setQueryData(experimentQuery(experiment.id).queryKey, experiment);
      return client.invalidateQueries({ queryKey: ["experiments", "list"] });
    },
  });
}

export function useCreateExperiment() {
  return useExperimentWrite((input: ExperimentCreate) => request<Experiment>("/experiments", { method: "POST", body: input }));
}

export function useUpdateExperiment(id: string) {
  return useExperimentWrite((input: ExperimentUpdate) => request<Experiment>(`/experiments/${id}`, { method: "PUT", body: input }));
}

export function useStartExperiment(id: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: () => request<Experiment>(`/experiments/${id}/start`, { method: "POST" }),
    onSuccess: (experiment) => {
      client.setQueryData(experimentQuery(experiment.id).queryKey, experiment);
      // The start submitted a training job.
      void client.invalidateQueries({ queryKey: ["jobs"] });
      return client.invalidateQueries({ queryKey: ["experiments", "list"] });
    },
  });
}
