// The "Reference data" page: fetches api/summary (same origin, Airflow's _token cookie) and draws it.
// Chart.js is the vendored static/chart.umd.min.js; nothing is loaded from elsewhere.
"use strict";

const PALETTE = ["#017cee", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#4a5568"];
const SEGMENTS = [
  ["authoritative", "Authoritative", "#017cee"],
  ["auto_derived", "Auto-derived (reviewed)", "#38a169"],
  ["needs_review", "Needs review", "#dd6b20"],
];
const charts = {};

const fmtInt = (n) => (n === null || n === undefined ? "" : Number(n).toLocaleString("en-US"));
const fmtPct = (v) => (v === null || v === undefined ? "" : (100 * v).toFixed(1) + "%");
const fmtTime = (iso) => {
  if (!iso) return "";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
};
const fmtNum = (v, digits) => (v === null || v === undefined ? "" : Number(v).toFixed(digits));

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

function badge(text, cls) {
  const span = document.createElement("span");
  span.className = "badge " + (cls || text || "none");
  span.textContent = text || "never synced";
  return span;
}

function fillTable(id, rows, render, emptyText) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren();
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(emptyText, "empty");
    td.colSpan = document.querySelectorAll(`#${id} thead th`).length;
    tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const td of render(row)) tr.appendChild(td);
    body.appendChild(tr);
  }
}

function drawChart(id, config) {
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart(document.getElementById(id), config);
}

function lineChart(id, series, tables, yOptions) {
  // One category per point in time (the health checks and runs of all tables), evenly spaced and labelled:
  // readable both for years of daily checks and for a burst of runs minutes apart.
  const times = [...new Set(tables.flatMap((t) => (series[t] || []).map((p) => p.at)))]
    .sort((a, b) => Date.parse(a) - Date.parse(b));
  const days = new Set(times.map((t) => fmtTime(t).slice(0, 10)));
  let label = (t) => (days.size <= 1 ? fmtTime(t).slice(11) : fmtTime(t).slice(5, 16));
  if (new Set(times.map(label)).size < times.length) {
    // Points closer than the label's precision (runs seconds apart): show the milliseconds too.
    label = (t) => fmtTime(t).slice(days.size <= 1 ? 11 : 5) + "." + String(new Date(t).getMilliseconds()).padStart(3, "0");
  }
  const datasets = tables
    .map((table, i) => {
      const byTime = new Map((series[table] || []).map((p) => [p.at, p]));
      return {
        label: table,
        data: times.map((t) => (byTime.has(t) ? 100 * byTime.get(t).value : null)),
        sources: times.map((t) => (byTime.has(t) ? byTime.get(t).source : null)),
        borderColor: PALETTE[i % PALETTE.length],
        backgroundColor: PALETTE[i % PALETTE.length],
        spanGaps: true,
        tension: 0,
        pointRadius: 4,
      };
    })
    .filter((d) => d.data.some((v) => v !== null));
  drawChart(id, {
    type: "line",
    data: { labels: times.map(label), datasets },
    options: {
      maintainAspectRatio: false,
      animation: false,
      scales: {
        x: { ticks: { maxTicksLimit: 8 } },
        y: { beginAtZero: true, ...yOptions, ticks: { callback: (v) => v + "%" } },
      },
      plugins: {
        legend: { position: "bottom" },
        tooltip: {
          callbacks: {
            title: (items) => fmtTime(times[items[0].dataIndex]),
            label: (item) =>
              `${item.dataset.label}: ${item.parsed.y.toFixed(2)}% (${item.dataset.sources[item.dataIndex]})`,
          },
        },
      },
    },
  });
}

function render(data) {
  document.getElementById("generated").textContent =
    `${data.tables.length} tables (from the ${data.tables_from}) · as of ${fmtTime(data.generated_at)}`;

  // Alerts
  const alerts = document.getElementById("alerts");
  document.getElementById("alert-count").textContent = data.alerts.length ? `(${data.alerts.length})` : "";
  alerts.replaceChildren();
  if (!data.alerts.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "No alerts.";
    alerts.appendChild(p);
  }
  for (const a of data.alerts) {
    const div = document.createElement("div");
    div.className = "alert";
    div.appendChild(badge(a.level));
    const msg = document.createElement("span");
    msg.textContent = a.message;
    div.appendChild(msg);
    alerts.appendChild(div);
  }

  // Counts: stacked bar + table
  const labels = data.counts.map((c) => c.table);
  drawChart("chart-counts", {
    type: "bar",
    data: {
      labels,
      datasets: SEGMENTS.map(([key, label, color]) => ({
        label, backgroundColor: color, data: data.counts.map((c) => c[key]),
      })),
    },
    options: {
      indexAxis: "y",
      maintainAspectRatio: false,
      animation: false,
      scales: { x: { stacked: true, ticks: { callback: (v) => fmtInt(v) } }, y: { stacked: true } },
      plugins: { legend: { position: "bottom" } },
    },
  });
  fillTable("counts", data.counts, (c) => [
    cell(c.table),
    cell(fmtInt(c.total_rows), "num"),
    cell(fmtInt(c.authoritative), "num"),
    cell(fmtInt(c.auto_derived_rows), "num"),
    cell(fmtInt(c.needs_review), "num"),
    cell(fmtPct(c.auto_derived_ratio), "num"),
    cell(fmtInt(c.open_placeholders), "num"),
    cell(fmtNum(c.oldest_open_placeholder_age_days, 1), "num"),
  ], "No reference tables.");

  lineChart("chart-ratio", data.ratio_series, data.tables, {});
  // Coverage lives near 100%: an axis from 0 would flatten the gaps the backfill closed.
  lineChart("chart-coverage", data.coverage_series, data.tables, { beginAtZero: false, max: 100 });

  fillTable("placeholders", data.placeholders, (p) => [
    cell(p.table),
    cell(p.key),
    cell(fmtInt(p.fact_rows_total), "num"),
    cell(fmtInt(p.fact_rows_last), "num"),
    cell(p.domains.join(", ")),
    cell(fmtTime(p.first_seen_at)),
    cell(fmtTime(p.last_seen_at)),
    cell(fmtNum(p.age_days, 1), "num"),
  ], "No open placeholders.");

  fillTable("syncs", data.last_syncs, (s) => {
    const status = document.createElement("td");
    status.appendChild(badge(s.status));
    return [
      cell(s.table),
      status,
      cell(fmtTime(s.finished_at)),
      cell(fmtNum(s.duration_seconds, 2), "num"),
      cell([s.source_type, s.sync_mode].filter(Boolean).join(" / ")),
      cell(fmtInt(s.rows_read), "num"),
      cell(fmtInt(s.rows_inserted), "num"),
      cell(fmtInt(s.rows_updated), "num"),
      cell(fmtInt(s.rows_unchanged), "num"),
      cell(fmtInt(s.rows_deleted), "num"),
      cell(fmtInt(s.rows_promoted), "num"),
      cell(fmtTime(s.watermark)),
      cell(s.error || s.skipped_reason || "", "wrap"),
    ];
  }, "No tables.");
}

async function load() {
  const error = document.getElementById("error");
  try {
    const response = await fetch("api/summary", { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(`${response.status}: ${body.detail || response.statusText}`);
    error.hidden = true;
    render(body);
    document.body.dataset.loaded = "true";
  } catch (exc) {
    error.textContent = `Could not load the reference data: ${exc.message}`;
    error.hidden = false;
    document.body.dataset.loaded = "error";
  }
}

document.getElementById("refresh").addEventListener("click", load);
load();
