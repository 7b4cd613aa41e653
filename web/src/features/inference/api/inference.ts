import { queryOptions, useQuery } from "@tanstack/react-query";
import { authorisedFetch, parseEnvelope, request, url } from "../../../api/client";
import type { GenerateRequest, ServableModel } from "../../../api/types";
import { readSse } from "../../../lib/sse";

export const servableModelsQuery = (projectId: string) =>
  queryOptions({
    queryKey: ["models", "servable", projectId],
    queryFn: () => request<ServableModel[]>("/inference/models", { query: { project_id: projectId, limit: 100 } }),
  });

export function useServableModels(projectId: string) {
  return useQuery({ ...servableModelsQuery(projectId), enabled: Boolean(projectId) });
}

export interface Prediction {
  label: string;
  probabilities: Record<string, number>;
}

export type GenerateInput = Pick<GenerateRequest, "model_id"> & Partial<GenerateRequest>;

// Streams generated text piece by piece (`piece` events, then `done`).
export async function generateStream(input: GenerateInput, onPiece: (text: string) => void, signal?: AbortSignal): Promise<string> {
  const response = await authorisedFetch(url("/inference/generate"), {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/event-stream" },
    body: JSON.stringify({ ...input, stream: true }),
    signal,
  });
  if (!response.ok || !response.body) {
    await parseEnvelope(response);
    throw new Error(`generation failed (${response.status})`);
  }
  let whole = "";
  let failure: string | null = null;
  await readSse(response.body, (message) => {
    const data = JSON.parse(message.data) as { text?: string; message?: string };
    if (message.event === "piece" && data.text) {
      whole += data.text;
      onPiece(data.text);
    } else if (message.event === "done" && typeof data.text === "string") whole = data.text;
    else if (message.event === "error") failure = data.message ?? "generation failed";
  });
  if (failure) throw new Error(failure);
  return whole;
}

export function predict(input: GenerateInput): Promise<{ predictions: Prediction[] }> {
  return request<{ predictions: Prediction[] }>("/inference/generate", { method: "POST", body: input });
}
