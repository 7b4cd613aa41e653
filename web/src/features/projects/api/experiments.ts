import { queryOptions, useQuery } from "@tanstack/react-query";
import { requestPage } from "../../../api/client";
import type { components } from "../../../api/schema";

export type Experiment = components["schemas"]["ExperimentView"];

export const experimentsQuery = (projectId: string) =>
  queryOptions({
    queryKey: ["experiments", "list", projectId],
    queryFn: () => requestPage<Experiment>("/experiments", { query: { project_id: projectId, limit: 100 } }),
  });

export function useExperiments(projectId: string) {
  return useQuery(experimentsQuery(projectId));
}
