// The web view's one script: live updates of the Activity page, and times kept fresh ("3 min ago").
// Every page works without it. No inline script anywhere: the Content-Security-Policy forbids it.
"use strict";

(function () {
  const POLL_MS = 3000;
  const KEEP = 50;

  function ago(iso) {
    const seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (!(seconds >= 10)) return "just now";
    if (seconds >= 86400 * 30) return iso.slice(0, 10);
    for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]]) {
      if (seconds >= size) return Math.floor(seconds / size) + " " + unit + " ago";
    }
    return "just now";
  }

  function refreshTimes() {
    for (const time of document.querySelectorAll("time[datetime]")) time.textContent = ago(time.dateTime);
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.textContent = text;  // never innerHTML: memory content is text, not markup
    return node;
  }

  function row(memory) {
    const item = document.createElement("li");
    item.dataset.id = memory.id;
    item.className = "new";
    const time = element("time", "", ago(memory.created_at));
    time.dateTime = memory.created_at;
    time.title = memory.created_at;
    const link = element("a", "snippet", memory.snippet);
    link.href = memory.url;
    item.append(time, " ", element("span", "community", memory.community), " ",
                element("span", "agent", memory.agent_id), " ", element("span", "kind", memory.kind), " ", link);
    return item;
  }

  function live(list) {
    const status = document.getElementById("live-status");
    const seen = new Set(Array.from(list.children, (item) => item.dataset.id));
    let newest = list.dataset.newest || "";

    async function poll() {
      if (document.hidden) return setTimeout(poll, POLL_MS);
      try {
        const url = list.dataset.feed + (newest ? "?after=" + encodeURIComponent(newest) : "");
        const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
        if (response.status === 401) {
          status.textContent = "signed out: reload the page to sign in";
          status.classList.add("off");
          return;  // stop polling
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        const memories = (await response.json()).memories;
        const fresh = memories.filter((memory) => !seen.has(memory.id));
        for (const memory of fresh.reverse()) {
          list.prepend(row(memory));
          seen.add(memory.id);
        }
        if (memories.length) newest = memories[0].created_at;
        while (list.children.length > KEEP) list.lastElementChild.remove();
        if (list.children.length) document.getElementById("activity-empty")?.remove();
        refreshTimes();
        status.textContent = "live · " + new Date().toLocaleTimeString();
        status.classList.remove("off");
      } catch (error) {
        status.textContent = "paused: the hub did not answer (" + error.message + "); retrying";
        status.classList.add("off");
      }
      setTimeout(poll, POLL_MS);
    }

    setTimeout(poll, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const list = document.getElementById("activity");
    if (list) live(list);
    setInterval(refreshTimes, 30000);
  });
})();
