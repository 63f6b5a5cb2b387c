// The session page's port links: each node's open ports, as links to their port URLs
// (another site: the link opens it in a new tab and tells it nothing about this page).
export class PortLinks {
  constructor(list, empty) {
    this.list = list;
    this.empty = empty;
    this.ports = new Map(); // node name -> [{port, url}]
  }

  show(node, ports) {
    this.ports.set(node, ports.filter((entry) => /^https?:$/.test(new URL(entry.url).protocol)));
    this.render();
  }

  forget(node) {
    this.ports.delete(node);
    this.render();
  }

  render() {
    this.list.replaceChildren();
    const names = [...this.ports.keys()].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
    for (const name of names) {
      for (const { port, url } of this.ports.get(name)) {
        const item = document.createElement("li");
        const link = document.createElement("a");
        link.className = "port-link";
        link.href = url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        link.textContent = `${name}:${port}`;
        item.append(link);
        this.list.append(item);
      }
    }
    this.empty.hidden = this.list.childElementCount > 0;
  }
}
