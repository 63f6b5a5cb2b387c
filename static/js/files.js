// Files in and out of the selected node: the upload button, files dropped on a terminal
// (into the shell's current directory), and the download box. docs/api.md has the rules.
import { ApiError } from "./api.js";

// The files URL of `node` in `sessionId`, with `path` when one is given.
export function filesUrl(sessionId, node, path) {
  const base = `/api/sessions/${encodeURIComponent(sessionId)}/nodes/${encodeURIComponent(node)}/files/`;
  return path ? `${base}?${new URLSearchParams({ path })}` : base;
}

async function failure(response) {
  const payload = await response.json().catch(() => ({}));
  return new ApiError(payload.error?.message || `the server answered ${response.status}`, {
    status: response.status,
    code: payload.error?.code,
  });
}

export class NodeFiles {
  // root: the panel's files section; dropZone: where terminals are; node(): the
  // selected node's name or null.
  constructor({ root, dropZone, sessionId, node }) {
    this.root = root;
    this.sessionId = sessionId;
    this.node = node;
    this.path = root.querySelector(".files-path");
    this.input = root.querySelector(".files-input");
    this.status = root.querySelector(".files-status");
    this.error = root.querySelector(".files-error");
    root.querySelector(".files-upload").addEventListener("click", () => this.input.click());
    this.input.addEventListener("change", () => {
      const chosen = [...this.input.files];
      this.input.value = "";
      this.upload(chosen, this.path.value.trim());
    });
    root.querySelector(".files-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.download(this.path.value.trim());
    });
    dropZone.addEventListener("dragover", (event) => {
      if (!event.dataTransfer?.types.includes("Files") || !this.node()) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      dropZone.classList.add("dropping");
    });
    dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dropping"));
    dropZone.addEventListener("drop", (event) => {
      dropZone.classList.remove("dropping");
      const dropped = [...(event.dataTransfer?.files || [])];
      if (!dropped.length || !this.node()) return;
      event.preventDefault();
      this.upload(dropped, "");
    });
  }

  say(text, error = "") {
    this.status.textContent = text;
    this.status.hidden = !text;
    this.error.textContent = error;
    this.error.hidden = !error;
  }

  // Upload `files` into `path` (empty: the shell's current directory) of the node.
  async upload(files, path) {
    const node = this.node();
    if (!node || !files.length) return;
    const form = new FormData();
    for (const file of files) form.append("file", file, file.name);
    this.say(`Uploading ${files.length === 1 ? files[0].name : `${files.length} files`} to ${node}…`);
    try {
      const response = await fetch(filesUrl(this.sessionId, node, path), {
        method: "POST",
        headers: { Accept: "application/json" },
        body: form,
      });
      if (!response.ok) throw await failure(response);
      const { files: written } = await response.json();
      const where = written.length === 1 ? written[0].path : `${written.length} files`;
      this.say(`Uploaded ${where} to ${node}.`);
    } catch (error) {
      this.say("", `Upload failed: ${error.message}`);
    }
  }

  // Save `path` (a file, or a directory as .tar) from the node. The first request only
  // checks that it can be had (and is dropped at once); the browser's own download
  // then streams it to disk.
  async download(path) {
    const node = this.node();
    if (!node) return;
    const url = filesUrl(this.sessionId, node, path);
    const check = new AbortController();
    try {
      const response = await fetch(url, { signal: check.signal });
      if (!response.ok) throw await failure(response);
      check.abort();
      const link = document.createElement("a");
      link.href = url;
      link.download = "";
      link.hidden = true;
      document.body.append(link);
      link.click();
      link.remove();
      this.say(`Downloading ${path || "the current directory"} from ${node}.`);
    } catch (error) {
      this.say("", `Download failed: ${error.message}`);
    }
  }
}
