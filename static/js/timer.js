// The session page's clock: the time left, the warning before the end and the Extend
// button. The page counts down itself; the server's events (session.extended,
// session.expiring) and answers set the end, so every open tab shows the same one.

// "1:05:09" or "4:07": what is left of `seconds`, for a person.
export function clock(seconds) {
  const left = Math.max(0, Math.round(seconds));
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  const s = String(left % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export class SessionTimer {
  // `elements`: {time, value, warning, text, extend} of the page; `extend` calls the API
  // and resolves to the session JSON.
  constructor({ expiresAt, hardExpiresAt, idleSeconds, warningSeconds, elements, extend }) {
    this.expiresAt = Date.parse(expiresAt);
    this.hardEnd = Date.parse(hardExpiresAt);
    this.idleSeconds = idleSeconds;
    this.warningSeconds = warningSeconds;
    this.el = elements;
    this.callExtend = extend;
    this.warned = false; // the server said session.expiring for the current end
    this.extending = false;
    this.notice = ""; // what the last Extend said, until the end moves
    this.stopped = false;
    this.el.extend.addEventListener("click", () => this.extend());
    this.render();
    this.tick = setInterval(() => this.render(), 1000);
  }

  // A new end from the server (an answer, session.extended or a resync).
  setEnd(expiresAt, { warned = false } = {}) {
    const end = Date.parse(expiresAt);
    if (Number.isNaN(end)) return;
    if (end !== this.expiresAt) {
      this.warned = false;
      this.notice = "";
    }
    this.expiresAt = end;
    this.warned = this.warned || warned;
    this.render();
  }

  // session.expiring: the server's warning, whatever this tab's clock says.
  expiring(expiresAt) {
    this.setEnd(expiresAt || new Date(this.expiresAt).toISOString(), { warned: true });
  }

  // Typing in a terminal pushes the idle limit back (the server throttles the writes).
  noteActivity() {
    this.setEnd(new Date(Math.min(this.hardEnd, Date.now() + this.idleSeconds * 1000)).toISOString());
  }

  async extend() {
    this.extending = true;
    this.notice = "";
    this.render();
    try {
      const session = await this.callExtend();
      this.setEnd(session.expires_at);
    } catch (error) {
      this.notice =
        error.code === "at_maximum"
          ? "This session is at its time limit and cannot be extended; save what you need."
          : `Could not extend the session: ${error.message}`;
    } finally {
      this.extending = false;
      this.render();
    }
  }

  stop() {
    this.stopped = true;
    clearInterval(this.tick);
    this.el.warning.hidden = true;
  }

  render() {
    if (this.stopped) return;
    const left = (this.expiresAt - Date.now()) / 1000;
    const atHardEnd = this.expiresAt >= this.hardEnd;
    const warn = this.warned || left <= this.warningSeconds;
    this.el.value.textContent = clock(left);
    this.el.time.dataset.expiresAt = new Date(this.expiresAt).toISOString();
    this.el.time.classList.toggle("warn", warn);
    this.el.extend.hidden = atHardEnd;
    this.el.extend.disabled = this.extending;
    this.el.warning.hidden = !(warn || this.notice);
    if (this.notice) this.el.text.textContent = this.notice;
    else if (atHardEnd) {
      this.el.text.textContent = `This session reaches its time limit in ${clock(left)}; save what you need.`;
    } else {
      this.el.text.textContent = `This session ends in ${clock(left)} without activity. Extend it, or type something.`;
    }
  }
}
