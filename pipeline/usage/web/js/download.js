// Export CSV. A plain link cannot send the Authorization header, so the CSV is fetched with the token and
// handed to the browser as a Blob behind a temporary <a download>.

import { getFile } from "./api.js";

/** Download export.csv for `params` ({scope, id, from, to, tz}); resolves to the file name. */
export async function downloadCsv(token, params) {
  const { blob, filename } = await getFile(token, "export.csv", params);
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  try {
    link.click();
  } finally {
    link.remove();
    // The click has handed the Blob to the download; revoke on the next turn so it is not cut short.
    setTimeout(() => URL.revokeObjectURL(url), 0);
  }
  return filename;
}
