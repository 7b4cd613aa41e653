import { authorisedFetch, parseEnvelope, url } from "../api/client";

// Downloads need the Authorization header, which a plain link cannot send: fetch the file and
// hand it to the browser as a saved file.
export async function downloadFile(path: string, fallbackName: string): Promise<void> {
  const response = await authorisedFetch(url(path));
  if (!response.ok) await parseEnvelope(response);
  const disposition = response.headers.get("content-disposition") ?? "";
  const named = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition)?.[1];
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = named ? decodeURIComponent(named) : fallbackName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
