// The emulator's page script (hand-written, no library): chart hover read-out, log-scale toggle and
// live refresh of a running run's charts. User values only ever reach the page through textContent.
"use strict";

(function () {
  const logOn = new Set(); // chart keys shown in log scale (kept across live refreshes)

  function nearest(steps, step) {
    let lo = 0;
    let hi = steps.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (steps[mid] <= step) lo = mid; else hi = mid;
    }
    return Math.abs(steps[hi] - step) < Math.abs(steps[lo] - step) ? hi : lo;
  }

  function fmt(v) {
    if (v === 0) return "0";
    if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
    return String(Number(v.toPrecision(4)));
  }

  function showLog(figure, on) {
    figure.querySelectorAll("svg.lin").forEach((s) => { s.style.display = on ? "none" : ""; });
    figure.querySelectorAll("svg.log").forEach((s) => { s.style.display = on ? "" : "none"; });
    figure.classList.toggle("in-log", on);
  }

  function bind(figure) {
    if (!figure.dataset.chart) return;
    const info = JSON.parse(figure.dataset.chart);
    const toggle = figure.querySelector(".log-toggle");
    if (toggle) {
      toggle.checked = logOn.has(info.key);
      showLog(figure, toggle.checked);
      toggle.addEventListener("change", () => {
        if (toggle.checked) logOn.add(info.key); else logOn.delete(info.key);
        showLog(figure, toggle.checked);
      });
    }
    const readout = figure.querySelector(".readout");
    const [left, top, width, height] = info.plot;
    figure.querySelectorAll("svg").forEach((svg) => {
      const log = svg.classList.contains("log");
      const ys = log ? info.ylog : info.y;
      const markers = svg.querySelectorAll("circle.marker");
      svg.addEventListener("mousemove", (event) => {
        const box = svg.getBoundingClientRect();
        const x = (event.clientX - box.left) * (svg.viewBox.baseVal.width / box.width);
        if (x < left || x > left + width) return;
        const step = info.x[0] + ((x - left) / width) * (info.x[1] - info.x[0]);
        const parts = [];
        let shownStep = null;
        info.lines.forEach((line, i) => {
          const k = nearest(line.steps, step);
          const s = line.steps[k];
          const v = line.values[k];
          if (shownStep === null) shownStep = s;
          const at = s === shownStep ? "" : " (step " + fmt(s) + ")"; // runs logged at other steps
          parts.push((info.lines.length > 1 ? line.label + " " : "") + fmt(v) + at);
          const yv = log ? Math.log10(v) : v;
          const cx = left + ((s - info.x[0]) / (info.x[1] - info.x[0])) * width;
          const cy = top + height - ((yv - ys[0]) / (ys[1] - ys[0])) * height;
          markers[i].setAttribute("cx", cx.toFixed(1));
          markers[i].setAttribute("cy", cy.toFixed(1));
          markers[i].setAttribute("visibility", "visible");
        });
        readout.textContent = "step " + fmt(shownStep) + ": " + parts.join(", ");
      });
      svg.addEventListener("mouseleave", () => {
        markers.forEach((m) => m.setAttribute("visibility", "hidden"));
      });
    });
  }

  function bindAll(root) {
    root.querySelectorAll("figure.chart").forEach(bind);
  }

  async function refresh(container) {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "charts");
    const response = await fetch(url.toString(), { cache: "no-store" });
    if (!response.ok) return "idle";
    const html = await response.text();
    const doc = new DOMParser().parseFromString(html, "text/html");
    const fresh = doc.getElementById("live");
    if (!fresh) return "idle";
    container.replaceWith(fresh);
    const adopted = document.getElementById("live");
    bindAll(adopted);
    return adopted.dataset.state;
  }

  function live() {
    const container = document.getElementById("live");
    if (!container || container.dataset.state !== "running") return;
    const period = Number(container.dataset.poll || "2000");
    const tick = async () => {
      let state = "idle";
      try {
        state = await refresh(document.getElementById("live"));
      } catch (err) {
        state = "running"; // a failed poll is retried at the next tick
      }
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || "0") + 1);
      if (state === "running") window.setTimeout(tick, period);
    };
    window.setTimeout(tick, period);
  }

  document.addEventListener("DOMContentLoaded", () => {
    bindAll(document);
    live();
  });
})();
