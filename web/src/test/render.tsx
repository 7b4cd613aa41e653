import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render } from "@testing-library/react";
import type { ReactNode } from "react";
import { MemoryRouter, Route, Routes } from "react-router";

// Renders a page as the app does: with a query client and at a route of its own.
export function renderPage(path: string, route: string, page: ReactNode, others: Record<string, ReactNode> = {}) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(
    <QueryClientProvider client={client}>
      <MemoryRouter initialEntries={[path]}>
        <Routes>
          <Route path={route} element={page} />
          {Object.entries(others).map(([otherPath, element]) => (
            <Route key={otherPath} path={otherPath} element={element} />
          ))}
        </Routes>
      </MemoryRouter>
    </QueryClientProvider>,
  );
}

export function envelope(data: unknown, meta: Record<string, unknown> | null = null, status = 200): Response {
  return Response.json({ success: status < 400, data: status < 400 ? data : null, error: status < 400 ? null : String(data), meta }, { status });
}
