import { queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { request, requestPage } from "../../../api/client";
import type { Notification } from "../../../api/types";

export const notificationsQuery = (unread = false) =>
  queryOptions({
    queryKey: ["notifications", { unread }],
    queryFn: () => requestPage<Notification>("/notifications", { query: { unread: unread || undefined, limit: 20 } }),
  });

export function useNotifications(unread = false) {
  return useQuery(notificationsQuery(unread));
}

export function useMarkRead() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (id: string | "all") =>
      request<unknown>(id === "all" ? "/notifications/read-all" : `/notifications/${id}/read`, { method: "POST" }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["notifications"] }),
  });
}
