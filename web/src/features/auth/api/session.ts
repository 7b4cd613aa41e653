import { queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useSyncExternalStore } from "react";
import { API, parseEnvelope, request } from "../../../api/client";
import { getSession, setSession, subscribeSession } from "../../../api/session";
import type { Me, TokenPair, User } from "../../../api/types";

export function useIsLoggedIn(): boolean {
  return useSyncExternalStore(subscribeSession, () => getSession() !== null);
}

export async function login(username: string, password: string): Promise<void> {
  // Not through `request`: a wrong password is a 401 that must not trigger a token refresh.
  const response = await fetch(`${API}/auth/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const envelope = await parseEnvelope<TokenPair>(response);
  if (envelope.data) setSession(envelope.data);
}

export function useLogin() {
  return useMutation({ mutationFn: (input: { username: string; password: string }) => login(input.username, input.password) });
}

export function useLogout() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: () => request<unknown>("/auth/logout", { method: "POST" }),
    onSettled: () => {
      setSession(null, "logout");
      client.clear();
    },
  });
}

export const meQuery = queryOptions({
  queryKey: ["me"],
  queryFn: () => request<Me>("/auth/me"),
  staleTime: 60_000,
});

export function useMe() {
  return useQuery(meQuery);
}

export function useChangePassword(userId: string | undefined) {
  return useMutation({
    mutationFn: (input: { current_password: string; password: string }) =>
      request<User>(`/users/${userId}`, { method: "PUT", body: input }),
  });
}
