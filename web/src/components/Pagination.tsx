import type { PageMeta } from "../api/types";

export function Pagination({ meta, onPage }: { meta: PageMeta | undefined; onPage: (page: number) => void }) {
  if (!meta || (meta.page === 1 && !meta.has_more)) return null;
  const pages = Math.max(1, Math.ceil(meta.total / meta.limit));
  return (
    <nav className="pagination" aria-label="Pages">
      <button type="button" disabled={meta.page <= 1} onClick={() => onPage(meta.page - 1)}>
        Previous
      </button>
      <span>
        Page {meta.page} of {pages}
      </span>
      <button type="button" disabled={!meta.has_more} onClick={() => onPage(meta.page + 1)}>
        Next
      </button>
    </nav>
  );
}
