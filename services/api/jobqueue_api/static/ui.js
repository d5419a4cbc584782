// The jobs web page's one script. Job parameters and results are user input shown to others, so
// this file never builds HTML from data: every value goes in through textContent or setAttribute.
// All URLs are relative to the API root the page was served under (data-root), so the page works
// through a port-forward and under an Ingress path prefix alike.
(function () {
  "use strict";

  var body = document.body;
  var ROOT = body.getAttribute("data-root") || "./";
  var PAGE = body.getAttribute("data-page");
  var meta = document.querySelector('meta[name="csrf-token"]');
  var CSRF = meta ? meta.getAttribute("content") : "";
  var SVG = "http://www.w3.org/2000/svg";
  var FINAL = { complete: true, failed: true, cancelled: true };

  // --- helpers ---------------------------------------------------------------------------------
  function api(method, path, payload, extra) {
    var headers = { Accept: "application/json" };
    if (CSRF) headers["X-CSRF-Token"] = CSRF;
    if (extra) Object.keys(extra).forEach(function (k) { headers[k] = extra[k]; });
    var init = { method: method, credentials: "same-origin", headers: headers, cache: "no-store" };
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(ROOT + path, init).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (data) {
        if (r.status === 401 && PAGE !== "login") { loggedOut(); location.reload(); }
        return { status: r.status, ok: r.ok, data: data, statusText: r.statusText };
      });
    }, function () {
      var e = new Error(UNREACHABLE);
      e.unreachable = true;
      throw e;
    });
  }

  // A 401 is the page's token cookie no longer accepted (the token was changed, the browser session
  // ended): the page reloads to its login form. That form said nothing of why, and a Submit form
  // being filled in was lost with the page. This tab (sessionStorage) keeps that it happened and
  // what the form held, until the page is back after logging in.
  var EXPIRED = "jobqueue.loggedOut", DRAFT = "jobqueue.draft";
  var keepDraft = null;   // set by the Submit page
  function stored(key, value) {
    try {
      if (value === undefined) return sessionStorage.getItem(key);
      if (value === null) sessionStorage.removeItem(key); else sessionStorage.setItem(key, value);
    } catch (e) { /* storage off: the login form as before */ }
    return null;
  }
  function loggedOut() {
    stored(EXPIRED, "1");
    if (keepDraft) stored(DRAFT, JSON.stringify(keepDraft()));
  }

  // No answer at all (the API stopped, the kubectl port-forward ended, the network went): the
  // browser's own words were "TypeError: Failed to fetch", which says neither what happened nor what
  // to do. Said in the notice, as every other trouble is.
  var UNREACHABLE = "The API cannot be reached: it has stopped, or the connection to it (a kubectl " +
    "port-forward, the network) has gone.";
  var RETRYING = " Trying again every few seconds; what this page shows may be out of date.";
  var AGAIN = " The job may not be queued: press Submit again once the API is back (restart the " +
    "port-forward if it stopped). The page sends the same request, so the job is queued once.";
  function failed(e, then) {
    return e && e.unreachable ? UNREACHABLE + then : "Something went wrong on this page: " + e;
  }

  // A submit carries an Idempotency-Key, so pressing again (a double click, or after the network
  // lost the answer) returns the job already stored instead of queueing a second one. The key is
  // kept while the same request has had no answer that settles it (no answer at all, or a 504),
  // and dropped once one does or the request changes. crypto.randomUUID exists only in secure
  // contexts (not plain http through a port-forward); getRandomValues exists everywhere.
  function newKey() {
    var b = crypto.getRandomValues(new Uint8Array(16)), hex = "";
    b[6] = (b[6] & 0x0f) | 0x40;   // the shape of a version-4 UUID
    b[8] = (b[8] & 0x3f) | 0x80;
    for (var i = 0; i < 16; i++) hex += (b[i] + 0x100).toString(16).slice(1);
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }

  var pending = null;   // {body, key}: the submit not yet settled
  function submitJob(payload) {
    var body = JSON.stringify(payload);
    if (!pending || pending.body !== body) pending = { body: body, key: newKey() };
    var sent = pending;
    return api("POST", "submit", payload, { "Idempotency-Key": '"' + sent.key + '"' }).then(function (res) {
      if (res.status !== 504 && pending === sent) pending = null;
      return res;
    });
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function byId(id) { return document.getElementById(id); }

  function fmtTime(ts) {
    if (ts === null || ts === undefined || ts === "" || isNaN(Number(ts))) return "–";
    var d = new Date(Number(ts) * 1000);
    return d.toLocaleString(undefined, { year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function fmtAge(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    seconds = Math.max(0, Number(seconds));
    if (seconds < 90) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " days";
  }

  // Thousands separators, and every decimal the number has: toLocaleString() alone rounds to 3, so a
  // result's latitude 30.2672 showed as 30.267 (about 20 m off) and -97.7431 as -97.743.
  function fmtNum(n) {
    return typeof n === "number" ? n.toLocaleString(undefined, { maximumFractionDigits: 20 }) : String(n);
  }

  // A live region speaks each time its text is written, even with the text it already has: the
  // polls wrote "Page 1 · 25 shown" and "the job store (Redis) is unreachable" every 3 s, and a
  // screen reader said them again every 3 s. Live text is written only when it changes.
  function say(node, text) {
    text = text || "";
    if (node.textContent !== text) node.textContent = text;
  }

  // A poll redrew a table's rows from scratch: a keyboard user on a job's link in the jobs table (or
  // the overview's workers table) was sent back to the page's start every 3 s. Rows are now kept per
  // key (a job's or worker's id) and only their changed cells replaced, so a focused link stays
  // where it is, unannounced; if its row left the table, the focus goes to the table's box.
  function drawRows(tbody, rows) {
    var at = document.activeElement;
    var inside = !!at && at !== tbody && tbody.contains(at);
    var kept = {};
    Array.prototype.forEach.call(tbody.rows, function (tr) { if (tr.dataset.key) kept[tr.dataset.key] = tr; });
    var wanted = rows.map(function (fresh) {
      var old = fresh.dataset.key && kept[fresh.dataset.key];
      if (!old || old.cells.length !== fresh.cells.length) return fresh;
      Array.prototype.slice.call(fresh.cells).forEach(function (cell, i) {
        if (old.cells[i].outerHTML !== cell.outerHTML) old.replaceChild(cell, old.cells[i]);
      });
      return old;
    });
    Array.prototype.slice.call(tbody.rows).forEach(function (tr) {
      if (wanted.indexOf(tr) < 0) tbody.removeChild(tr);
    });
    wanted.forEach(function (tr, i) {
      if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
    });
    if (inside && !tbody.contains(document.activeElement)) {
      var box = tbody.closest("[tabindex]");
      if (box) box.focus();
    }
  }

  // At most `most` characters, the last an ellipsis when cut. Counted in characters, not UTF-16
  // units: slice() cut an emoji (two units) in half, and its lone half showed as "\uFFFD" before the "…".
  function shorten(text, most) {
    var chars = Array.from(text);
    return chars.length > most ? chars.slice(0, most - 1).join("") + "…" : text;
  }

  // The notice stays in the page when empty (ui.css draws nothing then): a live region that is
  // hidden is not in the accessibility tree, and a message written as it appeared could go unsaid.
  function notice(message) {
    var box = byId("notice");
    if (box) say(box, message);
  }

  // An answer without the API's JSON error is not the API's: an Ingress or proxy in front of it
  // answers 502, 503 or 504 in HTML when the API's pods are down or restarting, and the page said
  // only "The API answered 503.", as if the API had refused the request.
  function errorText(res) {
    if (res.data && res.data.message) return res.data.message;
    return "Something in front of the API (a proxy or Ingress) answered " + res.status +
      (res.statusText ? " " + res.statusText : "") + ", not the API itself" +
      (res.status >= 500 ? ": the API may be down or restarting. Try again in a moment." : ".");
  }

  // A submit's 504 (Redis did not answer in time) tells an API client to send the same request
  // with the same Idempotency-Key; on the page that is pressing again, which submitJob does (the
  // key is kept): the page said "Idempotency-Key" to a student who never saw one.
  function submitErrorText(res) {
    if (res.status === 504 && res.data && res.data.error === "redis_timeout") {
      return "The job store (Redis) did not answer in time, so the job may or may not have been stored. " +
        "Press Submit again once it answers: the page sends the same request, which finds the job if " +
        "it was stored and stores it if not, so it is never queued twice.";
    }
    return errorText(res);
  }

  // Poll fn every `ms` while the tab is visible; fn returns a promise.
  function every(ms, fn) {
    var timer = null;
    function tick() {
      timer = null;
      var p = document.hidden ? Promise.resolve() : fn();
      Promise.resolve(p).catch(function (e) { notice(failed(e, RETRYING)); })
        .then(function () { timer = setTimeout(tick, ms); });
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer !== null) { clearTimeout(timer); tick(); }
    });
    tick();
  }

  // A list that applies its pick at once (the jobs filters, the operation chooser). Arrow keys on a
  // closed select change its value too, and applying each such change reloaded the page and lost
  // the focus at the first press: from the keyboard, arrows move through the list and Enter (or the
  // form's own button) applies it; a pick with the mouse or a finger applies at once.
  function applyOnPick(select, form) {
    var keyed = false;
    select.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") { ev.preventDefault(); form.requestSubmit(); return; }
      keyed = true;
    });
    select.addEventListener("pointerdown", function () { keyed = false; });
    select.addEventListener("change", function () { if (!keyed) form.requestSubmit(); });
  }

  // The Filter and Choose forms are plain GET forms (they work without script). With the API gone
  // (the port-forward stopped) sending one swapped the page for the browser's own error page, and
  // what was picked went with it. The address the form makes is asked for first (HEAD: the same
  // page, without its body) and opened only once something answers; no answer is said in the
  // notice, as everywhere else, and the form keeps its values.
  function openWhenReachable(form, press) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var url = new URL(form.action);
      url.search = new URLSearchParams(new FormData(form)).toString();
      fetch(url.href, { method: "HEAD", credentials: "same-origin", cache: "no-store" }).then(function () {
        notice("");   // not brought back with the page by Back
        location.assign(url.href);
      }, function () {
        notice(UNREACHABLE + " Press " + press + " again once it is back (restart the port-forward if it stopped).");
      });
    });
  }

  function formatTimes() {
    Array.prototype.forEach.call(document.querySelectorAll("time.ts"), function (t) {
      t.textContent = fmtTime(t.getAttribute("datetime"));
    });
  }

  // --- charts (inline SVG, drawn from data with attributes only) --------------------------------
  // Columns over time: series = [{name, cls, values}], stacked.
  function columnChart(container, labels, series, title) {
    clear(container);
    var w = 600, h = 160, pad = 24, n = labels.length;
    var totals = labels.map(function (_, i) {
      return series.reduce(function (s, ser) { return s + (ser.values[i] || 0); }, 0);
    });
    var max = Math.max.apply(null, totals.concat([1]));
    var chart = svg("svg", { viewBox: "0 0 " + w + " " + h, class: "svg-chart", role: "img", "aria-label": title });
    var bw = (w - pad) / n;
    for (var i = 0; i < n; i++) {
      var y = h - pad;
      series.forEach(function (ser) {
        var v = ser.values[i] || 0;
        if (!v) return;
        var bh = (h - 2 * pad) * v / max;
        y -= bh;
        var r = svg("rect", { x: pad + i * bw + 1, y: y, width: Math.max(1, bw - 2), height: bh, class: ser.cls });
        var tip = svg("title", {});
        tip.textContent = labels[i] + ": " + v + " " + ser.name;
        r.appendChild(tip);
        chart.appendChild(r);
      });
    }
    chart.appendChild(svg("line", { x1: pad, x2: w, y1: h - pad, y2: h - pad, class: "axis" }));
    var top = svg("text", { x: 2, y: pad, class: "tick" }); top.textContent = String(max);
    chart.appendChild(top);
    var zero = svg("text", { x: 2, y: h - pad, class: "tick" }); zero.textContent = "0";
    chart.appendChild(zero);
    [[0, "start"], [Math.floor(n / 2), "middle"], [n - 1, "end"]].forEach(function (tick) {
      var i = tick[0];
      var t = svg("text", { x: pad + (i + (tick[1] === "start" ? 0 : tick[1] === "end" ? 1 : 0.5)) * bw, y: h - 6,
        class: "tick", "text-anchor": tick[1] });
      t.textContent = labels[i];
      chart.appendChild(t);
    });
    container.appendChild(chart);
  }

  // Horizontal bars for label -> count pairs (already ordered), at most BARS of them (the caller
  // says when there are more: a chart that drops bars silently reads as the whole result).
  var BARS = 30;
  function barChart(container, pairs, title) {
    pairs = pairs.slice(0, BARS);
    var max = Math.max.apply(null, pairs.map(function (p) { return p[1]; }).concat([1]));
    var rowH = 22, labelW = 260, w = 720, h = rowH * pairs.length + 6;
    var chart = svg("svg", { viewBox: "0 0 " + w + " " + h, class: "svg-chart bars", role: "img", "aria-label": title });
    pairs.forEach(function (p, i) {
      var y = 3 + i * rowH;
      var label = svg("text", { x: labelW - 6, y: y + 15, class: "label", "text-anchor": "end" });
      var name = String(p[0]);
      label.textContent = shorten(name, 40);
      chart.appendChild(label);
      var bw = Math.max(1, (w - labelW - 70) * p[1] / max);
      chart.appendChild(svg("rect", { x: labelW, y: y + 2, width: bw, height: rowH - 6, class: "bar" }));
      var v = svg("text", { x: labelW + bw + 4, y: y + 15, class: "value" });
      v.textContent = fmtNum(p[1]);
      chart.appendChild(v);
    });
    container.appendChild(chart);
  }

  // --- login / logout --------------------------------------------------------------------------
  function apiRootPath() { return new URL(ROOT, location.href).pathname; }

  function initLogin() {
    var form = byId("login-form");
    if (!form) return;
    if (stored(EXPIRED)) {
      notice("The page's login is no longer accepted (the token was changed, or the browser session ended): " +
        "log in again." + (stored(DRAFT) ? " The Submit form you were filling in is kept." : ""));
    }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var input = byId("token"), err = byId("token-error");
      err.textContent = "";
      input.removeAttribute("aria-invalid");
      if (!input.value) { err.textContent = "Enter the token."; input.setAttribute("aria-invalid", "true"); input.focus(); return; }
      // on a slow network nothing showed between the press and the page after it
      notice("Logging in…");
      api("POST", "ui/login", { token: input.value, path: apiRootPath() }).then(function (res) {
        if (res.ok) { stored(EXPIRED, null); location.reload(); return; }
        notice("");
        err.textContent = errorText(res);
        input.setAttribute("aria-invalid", "true");
        input.focus();
      }, function (e) { notice(failed(e, " Press Log in again once it is back.")); });
    });
  }

  function initLogout() {
    var btn = byId("logout");
    if (!btn) return;
    btn.addEventListener("click", function () {
      api("POST", "ui/logout?path=" + encodeURIComponent(apiRootPath()), {}).then(function () { location.reload(); },
        function (e) { notice(failed(e, " Press Log out again once it is back.")); });
    });
  }

  // --- overview --------------------------------------------------------------------------------
  function initOverview() {
    every(3000, function () {
      return api("GET", "queue").then(function (res) {
        if (!res.ok) { notice(errorText(res)); return; }
        notice("");
        var q = res.data;
        byId("st-depth").textContent = fmtNum(q.depth);
        byId("st-progress").textContent = fmtNum(q.in_progress);
        byId("st-delayed").textContent = fmtNum(q.delayed_retries);
        byId("st-oldest").textContent = q.oldest_waiting_seconds === null ? "none waiting" : fmtAge(q.oldest_waiting_seconds);
        byId("st-alive").textContent = fmtNum(q.workers_alive);
        byId("st-updated").textContent = "Last update " + new Date().toLocaleTimeString() + ".";
        byId("stalled").hidden = !q.stalled;
        say(byId("stalled-reason"), q.stalled_reason);   // (inside role=alert: said again at each write)
        var rows = [];
        if (!q.workers.length) {
          var tr0 = el("tr"); tr0.appendChild(el("td", { colspan: "4" }, "No worker has a heartbeat."));
          rows.push(tr0);
        }
        q.workers.forEach(function (w) {
          var tr = el("tr", { "data-key": w.id });
          tr.appendChild(el("td", null, w.id));
          tr.appendChild(el("td", { class: w.alive ? "ok" : "bad" }, w.alive ? "yes" : "no (lease expired)"));
          tr.appendChild(el("td", null, fmtAge(w.heartbeat_age_seconds) + " ago"));
          var td = el("td");
          if (w.job_id) td.appendChild(el("a", { href: ROOT + "ui/jobs/" + encodeURIComponent(w.job_id) }, w.job_id.slice(0, 8)));
          else td.textContent = w.busy ? "busy (another user's job)" : "idle";
          tr.appendChild(td);
          rows.push(tr);
        });
        drawRows(byId("workers"), rows);
        var r = q.recent, labels = [];
        for (var i = 0; i < r.complete.length; i++) {
          var d = new Date((r.start + i * r.bucket_seconds) * 1000);
          labels.push(d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }));
        }
        var sum = function (a) { return a.reduce(function (s, v) { return s + v; }, 0); };
        byId("recent-complete").textContent = fmtNum(sum(r.complete));
        byId("recent-failed").textContent = fmtNum(sum(r.failed));
        byId("recent-sampled").hidden = !r.sampled;
        // no job finished: the chart was an empty frame with a y-axis topping at 1
        if (!sum(r.complete) && !sum(r.failed)) {
          var chart = byId("recent-chart");
          if (!chart.querySelector("p.empty")) { clear(chart); chart.appendChild(el("p", { class: "empty" }, "No job finished in the last 15 minutes.")); }
          return;
        }
        columnChart(byId("recent-chart"), labels, [
          { name: "completed", cls: "complete", values: r.complete },
          { name: "failed", cls: "failed", values: r.failed }
        ], "Jobs completed and failed per minute, last 15 minutes");
      });
    });
  }

  // --- jobs table -----------------------------------------------------------------------------
  function paramsText(params) {
    return shorten(JSON.stringify(params || {}), 80);
  }

  function duration(job) {
    if (!job.started_at) return "–";
    var end = job.finished_at || Date.now() / 1000;
    return fmtAge(end - job.started_at);
  }

  // with named tokens (API_TOKENS) the table has a User column: whose job it is (the admin's own: –)
  function hasOwners() {
    var table = byId("jobs-table");
    return !!table && table.hasAttribute("data-owners");
  }

  function jobRow(job) {
    var tr = el("tr", { "data-key": job.job_id });
    var td = el("td");
    td.appendChild(el("a", { href: ROOT + "ui/jobs/" + encodeURIComponent(job.job_id) }, job.job_id.slice(0, 8)));
    tr.appendChild(td);
    if (hasOwners()) tr.appendChild(el("td", null, job.owner || "–"));
    tr.appendChild(el("td", { class: "status s-" + job.status }, job.status));
    tr.appendChild(el("td", null, job.operation));
    tr.appendChild(el("td", { class: "params" }, paramsText(job.params)));
    tr.appendChild(el("td", null, fmtTime(job.submitted_at)));
    tr.appendChild(el("td", null, fmtTime(job.started_at)));
    tr.appendChild(el("td", null, fmtTime(job.finished_at)));
    tr.appendChild(el("td", null, duration(job)));
    tr.appendChild(el("td", { class: "num" }, job.attempts));
    tr.appendChild(el("td", null, job.worker || "–"));
    return tr;
  }

  function initJobs() {
    var form = byId("filters");
    var status = byId("f-status").value, operation = byId("f-operation").value;
    var who = byId("f-owner") ? byId("f-owner").value : "";  // the admin's User filter (named tokens)
    // Cursor paging (the store keeps an index per status and per operation, so a page costs the
    // same with 100 or 100,000 jobs); `history` holds the cursors of the pages before this one.
    var limit = 25, cursor = null, history = [], next = null;
    // The page shown is kept in this history entry's state, so Back from a job, or a reload, returns
    // to it (it was page 1 again, with no way to the later page but paging there anew)
    var kept = window.history.state && window.history.state.jobsPage;
    if (kept) { cursor = kept.cursor; history = kept.before.slice(); }
    function remember() {
      window.history.replaceState({ jobsPage: { cursor: cursor, before: history.slice() } }, "");
    }
    ["f-status", "f-operation", "f-owner"].forEach(function (id) {
      if (byId(id)) applyOnPick(byId(id), form);
    });
    openWhenReachable(form, "Filter");
    function query() {
      var q = "jobs?limit=" + limit;
      if (cursor) q += "&cursor=" + encodeURIComponent(cursor);
      if (status) q += "&status=" + encodeURIComponent(status);
      if (operation) q += "&operation=" + encodeURIComponent(operation);
      if (who) q += "&owner=" + encodeURIComponent(who);
      return q;
    }
    // Answers can come back out of order on a slow network: a poll of page 1 sent before "Older"
    // was pressed, answered after page 2, put page 1's rows under "Page 2" (and its cursor behind
    // Older). Only the answer to the latest request is drawn.
    var asked = 0;
    function load() {
      var mine = ++asked;
      return api("GET", query()).then(function (res) {
        if (mine !== asked) return;
        if (!res.ok) { notice(errorText(res)); return; }
        notice("");
        var rows = res.data.jobs.map(jobRow);
        if (!rows.length) {
          var tr = el("tr"); tr.appendChild(el("td", { colspan: hasOwners() ? "11" : "10" }, "No jobs match."));
          rows.push(tr);
        }
        drawRows(byId("jobs"), rows);
        next = res.data.next_cursor || null;
        byId("older").disabled = !next;
        byId("newer").disabled = history.length === 0;
        say(byId("page-info"), "Page " + (history.length + 1) + " · " + res.data.count + " shown");
      });
    }
    // Newer back to the first page, or Older to the last, disables the button pressed, and a
    // disabled button drops the focus to the page's start: the focus goes to the other one instead
    function stayInPager(pressed, other) {
      var at = document.activeElement;   // (the browser moves it off the disabled button a moment later)
      if (pressed.disabled && !other.disabled && (!at || at === pressed || at === document.body)) {
        other.focus();
      }
    }
    byId("older").addEventListener("click", function () {
      if (!next) return;
      history.push(cursor); cursor = next; remember();
      load().then(function () { stayInPager(byId("older"), byId("newer")); });
    });
    byId("newer").addEventListener("click", function () {
      if (!history.length) return;
      cursor = history.pop(); remember();
      load().then(function () { stayInPager(byId("newer"), byId("older")); });
    });
    var live = byId("live");
    var loaded = false;
    every(3000, function () {
      if (loaded && !live.checked) return null;
      return load().then(function () { loaded = true; });
    });
  }

  // --- one job ----------------------------------------------------------------------------------
  function countPairs(value) {
    // {label: number} objects are counts: draw them; keep their order (the API ranks them). An empty
    // one ({} when nothing matched, as by_issue far from any road) is counts too: none of them.
    if (!value || typeof value !== "object" || Array.isArray(value)) return null;
    var keys = Object.keys(value);
    for (var i = 0; i < keys.length; i++) if (typeof value[keys[i]] !== "number") return null;
    return keys.map(function (k) { return [k, value[k]]; });
  }

  // The counts as a table (the first 200, or ``limit``), folded away under "Table" (or ``title``)
  function countsTable(pairs, columns, title, limit) {
    columns = columns || ["value", "count"];
    limit = limit || 200;
    var table = el("table", { class: "grid" });
    var head = el("tr");
    head.appendChild(el("th", { scope: "col" }, columns[0]));
    // the count's heading over its figures: left-aligned, it sat a table's width from them
    head.appendChild(el("th", { scope: "col", class: "num" }, columns[1]));
    var thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
    var tb = el("tbody");
    pairs.slice(0, limit).forEach(function (p) {
      var tr = el("tr");
      tr.appendChild(el("td", null, p[0]));
      tr.appendChild(el("td", { class: "num" }, fmtNum(p[1])));
      tb.appendChild(tr);
    });
    table.appendChild(tb);
    var wrap = el("details", { class: "table-details" });
    wrap.appendChild(el("summary", null, (title || "Table") + (pairs.length > limit ? " (first " + limit + " of " + pairs.length + ")" : "")));
    wrap.appendChild(table);
    return wrap;
  }

  // "label: value" (the label may hold ": " itself: the value is after the last one)
  function splitLine(line) {
    var at = line.lastIndexOf(": ");
    return at < 0 ? [line, ""] : [line.slice(0, at), line.slice(at + 2)];
  }

  // A plot's description: its first line is the image's alt text, the rest its numbers, a table
  // under the image (a screen reader heard which chart it was, never what it showed)
  function describePlot(box, img, text) {
    var lines = text.split("\n");
    img.setAttribute("alt", lines[0] + (lines.length > 2 ? " Its numbers are in the table below it." : ""));
    if (lines.length < 2) return;
    var pairs = lines.slice(2).map(function (line) {
      var pair = splitLine(line), value = Number(pair[1].replace(/,/g, ""));
      return [pair[0], isNaN(value) ? pair[1] : value];
    });
    box.appendChild(countsTable(pairs, splitLine(lines[1]), "The chart's numbers", pairs.length));
  }

  // what a screen reader says of a plot with no description (a PNG stored by an older version):
  // which chart and for what parameters ("Plot produced by plot_top_locations" told nothing that
  // the page's heading did not)
  function plotAlt(job) {
    var params = job.params || {};
    var given = Object.keys(params).map(function (k) { return k + "=" + params[k]; });
    var alt = "Chart drawn by " + job.operation + (given.length ? " for " + given.join(", ") : ", over the whole dataset");
    var numbers = job.operation.indexOf("plot_") === 0 ? job.operation.slice(5) : "";
    return alt + (numbers ? ". The same counts as numbers: " + numbers + "." : ".");
  }

  var rendering = 0;  // a result's fetch that comes back after another render draws nothing

  function renderResult(job, box) {
    clear(box);
    var mine = ++rendering;
    if (job.result_type === "image/png") {
      // fetched once, for the pixels and for the description the PNG carries
      var url = ROOT + "jobs/" + encodeURIComponent(job.job_id) + "/result";
      var img = el("img", { alt: plotAlt(job), class: "plot", id: "j-png" });
      fetch(url, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.arrayBuffer();
      }).then(function (buf) {
        if (mine !== rendering) return;
        img.addEventListener("load", function () { URL.revokeObjectURL(img.src); });
        img.setAttribute("src", URL.createObjectURL(new Blob([buf], { type: "image/png" })));
        box.appendChild(img);
        var text = window.pngText(buf, "Description");
        if (text) describePlot(box, img, text);
      }).catch(function () {
        if (mine !== rendering) return;
        img.setAttribute("src", url);  // the browser's own request: the image, or its alt text
        box.appendChild(img);
      });
      return;
    }
    var result = job.result;
    if (result === null || typeof result !== "object") { box.appendChild(el("p", null, JSON.stringify(result))); return; }
    var scalars = el("dl", { class: "pairs" });
    var hasScalar = false;
    Object.keys(result).forEach(function (key) {
      var value = result[key];
      var pairs = countPairs(value);
      if (pairs) {
        var section = el("section", { class: "counts" });
        section.appendChild(el("h3", null, key + " (" + pairs.length + ")"));
        // a day series longer than the bar chart holds is drawn whole, as columns (daily_counts over
        // a 31-day month lost its last day); other counts past BARS are drawn in part, and say so
        var days = pairs.length > 0 && /^\d{4}-\d{2}-\d{2}$/.test(pairs[0][0]);
        var daily = days && pairs.length > BARS;
        // nothing counted (a date range before the data, a radius off every road): the chart was an
        // empty frame with a y-axis topping at 1, which reads as broken or as "about one"
        if (pairs.every(function (p) { return p[1] === 0; })) {
          section.appendChild(el("p", { class: "empty" }, "No incidents in this range" +
            (pairs.length ? ": every " + (days ? "day" : "count") + " is 0." : ".")));
          if (pairs.length) section.appendChild(countsTable(pairs));
          box.appendChild(section);
          return;
        }
        var chartBox = el("div", { class: "chart", tabindex: "0", role: "region", "aria-label": "Chart of " + key });
        if (daily) {
          columnChart(chartBox, pairs.map(function (p) { return p[0]; }),
            [{ name: key, cls: "complete", values: pairs.map(function (p) { return p[1]; }) }], key + " per day");
        } else {
          barChart(chartBox, pairs, key + (pairs.length > BARS ? ", the first " + BARS + " of " + pairs.length : ""));
        }
        section.appendChild(chartBox);
        if (!daily && pairs.length > BARS) {
          section.appendChild(el("p", { class: "muted chart-part" }, "The chart shows the first " + BARS + " of " +
            fmtNum(pairs.length) + "; the table below lists " + (pairs.length > 200 ? "the first 200" : "them all") +
            ", the JSON every one."));
        }
        section.appendChild(countsTable(pairs));
        box.appendChild(section);
      } else {
        hasScalar = true;
        scalars.appendChild(el("dt", null, key));
        scalars.appendChild(el("dd", null, typeof value === "object" ? JSON.stringify(value) : fmtNum(value)));
      }
    });
    if (hasScalar) box.insertBefore(scalars, box.firstChild);
  }

  function initJob() {
    var root = byId("job");
    var id = root.getAttribute("data-job-id");
    var jsonBox = byId("j-json-box");
    var current = null, rendered = null;
    jsonBox.addEventListener("toggle", function () {
      if (jsonBox.open && current) byId("j-json").textContent = JSON.stringify(current.result, null, 2);
    });
    function step(label, ts, extra) {
      var li = el("li", { class: ts ? "done" : "todo" });
      li.appendChild(el("strong", null, label));
      li.appendChild(document.createTextNode(" " + (ts ? fmtTime(ts) : "not yet") + (extra ? " · " + extra : "")));
      return li;
    }
    function render(job) {
      current = job;
      say(byId("j-status"), job.status);
      byId("j-status").className = "status s-" + job.status;
      byId("j-operation").textContent = job.operation;
      byId("j-params").textContent = JSON.stringify(job.params);
      if (byId("j-owner")) byId("j-owner").textContent = job.owner || "–";
      var tl = byId("j-timeline");
      clear(tl);
      tl.appendChild(step("Submitted", job.submitted_at));
      var attempt = job.attempts > 1 ? "attempt " + job.attempts + " (earlier attempts were retried)" : (job.attempts ? "attempt 1" : "");
      tl.appendChild(step("Started", job.started_at, [attempt, job.worker ? "worker " + job.worker : ""].filter(Boolean).join(", ")));
      var fin = job.status === "cancelled" ? "Cancelled" : job.status === "failed" ? "Failed" : "Finished";
      var extra = job.started_at && job.finished_at ? "took " + fmtAge(job.finished_at - job.started_at) : "";
      if (job.cached) extra = "answered from the stored result of an identical earlier job";
      tl.appendChild(step(fin, job.finished_at, extra));
      byId("j-error-box").hidden = !job.error;
      byId("j-error").textContent = job.error || "";
      var focused = document.activeElement;
      byId("a-cancel").hidden = job.status !== "submitted";
      byId("a-delete").hidden = !FINAL[job.status];
      byId("a-again").hidden = false;
      // Cancel done hides Cancel, and a hidden button drops the focus to the page's start
      if (focused && focused.hidden && focused.parentNode === byId("a-again").parentNode) byId("a-again").focus();
      var dl = byId("a-download");
      dl.hidden = job.status !== "complete";
      dl.setAttribute("href", ROOT + "jobs/" + encodeURIComponent(job.job_id) + "/result");
      dl.setAttribute("download", job.job_id + (job.result_type === "image/png" ? ".png" : ".json"));
      byId("j-result-box").hidden = job.status !== "complete";
      if (job.status === "complete" && rendered !== job.job_id + job.finished_at) {
        rendered = job.job_id + job.finished_at;
        renderResult(job, byId("j-result"));
        jsonBox.hidden = job.result_type === "image/png";
        if (jsonBox.open) byId("j-json").textContent = JSON.stringify(job.result, null, 2);
      }
    }
    // The notice says what the following of the job ran into (clearing it once it works again), that
    // a press of Cancel, Delete or Submit again is under way (on a slow network nothing else showed
    // for seconds, and a screen reader said nothing) and what it came to. The following cleared every notice at
    // its next answer: a refused Cancel ("a worker has already claimed this job") was wiped within
    // a moment, and the press seemed to do nothing. It now clears only its own.
    var following = false;   // the notice is the following's
    function trouble(message) { following = true; notice(message); }
    function tell(message) { following = false; notice(message); }
    // Deleted elsewhere (another tab, another user, expiry): a finished job's page is no longer
    // following it, and kept showing it "complete" with Delete and Download, both of which then
    // answered 404. It says so when the page next hears of it (a press, or the tab shown again) and
    // keeps only what still works: what it showed, and Submit again.
    function gone() {
      trouble("This job does not exist (deleted or expired, perhaps in another tab).");
      say(byId("j-status"), "gone");
      byId("j-status").className = "status";
      var focused = document.activeElement;
      ["a-cancel", "a-delete", "a-download"].forEach(function (b) { byId(b).hidden = true; });
      byId("a-again").hidden = !current;
      if (focused && focused.hidden && current) byId("a-again").focus();   // not dropped to the page's start
    }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden || !current || !FINAL[current.status]) return;
      api("GET", "jobs/" + encodeURIComponent(id)).then(function (res) {
        if (res.status === 404) gone(); else if (res.ok) render(res.data);
      }, function () { /* said by the next press */ });
    });
    function follow(wait) {
      return api("GET", "jobs/" + encodeURIComponent(id) + (wait ? "?wait=" + wait : "")).then(function (res) {
        if (res.status === 404) { gone(); return; }
        if (res.status === 400) { trouble(errorText(res)); byId("j-status").textContent = "not a job id"; return; }
        if (!res.ok) { trouble(errorText(res)); return new Promise(function (r) { setTimeout(r, 3000); }).then(function () { return follow(0); }); }
        if (following) tell("");
        render(res.data);
        if (!FINAL[res.data.status]) return follow(20);
      }, function (e) {
        // the API did not answer at all (stopped, restarting, the network gone): say so, as the other
        // pages do, rather than go on showing "in-progress" as if it were live while retrying
        trouble(failed(e, RETRYING));
        return new Promise(function (r) { setTimeout(r, 3000); }).then(function () { return follow(0); });
      });
    }
    follow(0);
    // One press at a time: on a slow network a second press of Delete while the first was out sent a
    // second DELETE, whose 404 put "This job does not exist" over "Deleting…" while the first was on
    // its way to succeed, and Submit again pressed twice sent two submits. A press while one is out
    // is let go (its notice stays); the buttons stay enabled, so the focus stays on them.
    var pressing = false;
    function onePress(run) {
      return function () {
        if (pressing) return;
        var out = run();
        if (!out) return;
        pressing = true;
        out.then(function () { pressing = false; }, function () { pressing = false; });
      };
    }
    byId("a-cancel").addEventListener("click", onePress(function () {
      // (one look at the job, not a second following of it: the one running goes on)
      tell("Cancelling…");
      return api("DELETE", "jobs/" + encodeURIComponent(id)).then(function (res) {
        if (res.status === 404) { gone(); return; }
        tell(res.ok ? "Cancelled." : errorText(res));
        return api("GET", "jobs/" + encodeURIComponent(id)).then(function (now) { if (now.ok) render(now.data); },
          function () { /* the following of the job says so, and catches up */ });
      }, function (e) { tell(failed(e, " Press Cancel again once it is back.")); });
    }));
    byId("a-delete").addEventListener("click", onePress(function () {
      if (!window.confirm("Delete this job and its result?")) return null;
      tell("Deleting…");
      return api("DELETE", "jobs/" + encodeURIComponent(id)).then(function (res) {
        if (res.ok) location.href = ROOT + "ui/jobs"; else if (res.status === 404) gone(); else tell(errorText(res));
      }, function (e) { tell(failed(e, " Press Delete again once it is back.")); });
    }));
    byId("a-again").addEventListener("click", onePress(function () {
      if (!current) return null;
      tell("Submitting…");
      return submitJob({ operation: current.operation, params: current.params }).then(function (res) {
        if (res.status === 202) location.href = ROOT + "ui/jobs/" + encodeURIComponent(res.data.job_id);
        else tell(submitErrorText(res));
      }, function (e) { tell(failed(e, AGAIN)); });
    }));
  }

  // --- submit form ------------------------------------------------------------------------------
  function fieldError(name, message) {
    var input = byId("p-" + name), box = byId("p-" + name + "-error");
    if (!box) return false;
    box.textContent = message || "";
    if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    return true;
  }

  function initSubmit() {
    var choose = byId("operation");
    if (choose) { applyOnPick(choose, byId("choose")); openWhenReachable(byId("choose"), "Choose"); }
    var form = byId("submit-form");
    if (!form) return;
    var fields = form.querySelectorAll("[data-type]");
    keepDraft = function () {
      var values = {};
      Array.prototype.forEach.call(fields, function (input) {
        values[input.name] = input.type === "checkbox" ? input.checked : input.value;
      });
      return { operation: form.getAttribute("data-operation"), values: values };
    };
    var draft = null;
    try { draft = JSON.parse(stored(DRAFT) || "null"); } catch (e) { draft = null; }
    stored(DRAFT, null);
    if (draft && draft.operation === form.getAttribute("data-operation")) {
      Array.prototype.forEach.call(fields, function (input) {
        if (!(input.name in draft.values)) return;
        if (input.type === "checkbox") input.checked = !!draft.values[input.name];
        else input.value = draft.values[input.name];
      });
      notice("The form has what you typed before logging in again: it was not sent. Press Submit to send it.");
    }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      byId("form-error").textContent = "";
      var params = {}, firstBad = null;
      Array.prototype.forEach.call(form.querySelectorAll("[data-type]"), function (input) {
        var name = input.getAttribute("name"), type = input.getAttribute("data-type");
        fieldError(name, "");
        // a maximum length is checked here, not by maxlength: that attribute cut a pasted 150-character
        // road to 100 without a word, and the job searched for a road nobody asked for
        var most = Number(input.getAttribute("data-maxlength")), length = Array.from(input.value).length;
        var tooLong = most && length > most ? "At most " + most + " characters; this has " + length + "." : "";
        if (tooLong || !input.checkValidity()) {
          fieldError(name, tooLong || input.validationMessage);
          firstBad = firstBad || input;
          return;
        }
        if (type === "boolean") { params[name] = input.checked; return; }
        if (input.value === "") return;   // optional and empty: the server's default
        // the field's own value (checkValidity held it to step 1 for an int): parseInt would read
        // "1e2" as 1 and "2000e-1" as 2000
        if (type === "int" || type === "number") params[name] = Number(input.value);
        else params[name] = input.value;
      });
      if (firstBad) { firstBad.focus(); return; }
      var button = form.querySelector("button[type=submit]");
      // disabling the focused button drops the focus to the page's start: a keyboard user who
      // pressed it was left at the top after an error, a Tab away from nothing. It goes back.
      var pressed = document.activeElement === button;
      button.disabled = true;
      // on a slow network the greyed button was all there was to see, and a screen reader heard nothing
      notice("Submitting…");
      function enable() {
        notice("");
        button.disabled = false;
        if (pressed && (!document.activeElement || document.activeElement === document.body)) button.focus();
      }
      submitJob({ operation: form.getAttribute("data-operation"), params: params }).then(function (res) {
        if (res.status === 202) { location.href = ROOT + "ui/jobs/" + encodeURIComponent(res.data.job_id); return; }
        enable();
        var param = res.data && res.data.param;
        if (param && fieldError(param, errorText(res))) { byId("p-" + param).focus(); return; }
        byId("form-error").textContent = submitErrorText(res);
      }, function (e) { enable(); notice(failed(e, AGAIN)); });
    });
  }

  // --- start ------------------------------------------------------------------------------------
  formatTimes();
  initLogout();
  if (PAGE === "login") initLogin();
  else if (PAGE === "overview") initOverview();
  else if (PAGE === "jobs" && byId("jobs-table")) initJobs();
  else if (PAGE === "jobs" && byId("job")) initJob();
  else if (PAGE === "submit") initSubmit();
})();
