import { queryOptions, useQuery } from "@tanstack/react-query";
import { request } from "../../../api/client";
import type { GpuStatus } from "../../../api/types";

export const gpuStatusQuery = queryOptions({
  queryKey: ["gpu"],
  queryFn: () => request<GpuStatus>("/gpu/status", { query: { history: true } }),
});

export function useGpuStatus() {
  return useQuery(gpuStatusQuery);
}
