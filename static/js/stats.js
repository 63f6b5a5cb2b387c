// Each node's live CPU and memory on the session page, from the node.stats events.

// "57 MiB", "1.0 GiB": a size in bytes, for a person.
export function size(bytes) {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  return `${Math.round(bytes / 2 ** 20)} MiB`;
}

export class NodeStats {
  constructor() {
    this.latest = new Map(); // node name -> its last node.stats event
    this.cells = new Map(); // node name -> the element showing it
  }

  // The element showing node `name`'s figures; the node list makes it anew each render.
  cell(name) {
    const span = document.createElement("span");
    span.className = "node-stats";
    span.dataset.node = name;
    this.cells.set(name, span);
    this.fill(name);
    return span;
  }

  update(event) {
    this.latest.set(event.name, event);
    this.fill(event.name);
  }

  forget(name) {
    this.latest.delete(name);
    this.cells.delete(name);
  }

  fill(name) {
    const span = this.cells.get(name);
    const stats = this.latest.get(name);
    if (!span) return;
    if (!stats) {
      span.textContent = "";
      span.removeAttribute("title");
      return;
    }
    const cpu = `CPU ${stats.cpu_percent.toFixed(stats.cpu_percent < 10 ? 1 : 0)}%`;
    span.textContent = `${cpu} · ${size(stats.memory_bytes)} / ${size(stats.memory_limit_bytes)}`;
    span.title = `${name}: ${cpu} (100% is one whole CPU), memory ${size(stats.memory_bytes)} of ${size(stats.memory_limit_bytes)}`;
  }
}
