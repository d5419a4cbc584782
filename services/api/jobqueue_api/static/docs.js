// Swagger UI over the API's own /openapi.json. Loaded as a file (the page's CSP forbids inline
// script). The spec is fetched relative to this page and its server is set to the page's base, so
// "Try it out" calls the API through the same port-forward or Ingress prefix the page came from.
(function () {
  "use strict";
  var el = document.getElementById("swagger-ui");
  // A dark system setting got a white Swagger UI among dark pages. Its stylesheet has a dark theme
  // behind html.dark-mode (meant for a toggle we do not show): follow the system setting with it,
  // live, as the web page's media query does; docs.css fixes the colours it leaves below AA.
  var dark = window.matchMedia("(prefers-color-scheme: dark)");
  function followScheme() {
    document.documentElement.classList.toggle("dark-mode", dark.matches);
  }
  followScheme();
  dark.addEventListener("change", followScheme);
  var specUrl = new URL(el.getAttribute("data-spec"), document.baseURI);
  // logged in on the web page: Try it out's calls carry its cookie, and a change made with it needs
  // the page's CSRF value (the server put it here only for that cookie's holder)
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  // The Authorize dialog, as Swagger UI draws it: its close button (an icon) has no name (axe:
  // button-name, critical), its Authorize and Logout buttons are named "Apply credentials" and
  // "Remove authorization", which a speech user saying the visible word cannot hit (axe:
  // label-content-name-mismatch), its field is named "auth-bearer-value", and it is not announced as a
  // dialog. On closing it the focus fell to the page's start; it goes back to the Authorize button.
  var dialogOpen = false;
  function authorizeDialog() {
    var dialog = el.querySelector(".modal-ux .modal-ux-inner");
    if (!dialog) {
      var opener = el.querySelector(".auth-wrapper .btn.authorize");
      var lost = !document.activeElement || document.activeElement === document.body;
      if (dialogOpen && opener && lost) opener.focus();
      dialogOpen = false;
      return;
    }
    dialogOpen = true;
    var title = dialog.querySelector(".modal-ux-header h3");
    if (title && !dialog.hasAttribute("role")) {
      title.id = "authorize-dialog-title";
      dialog.setAttribute("role", "dialog");
      dialog.setAttribute("aria-modal", "true");
      dialog.setAttribute("aria-labelledby", title.id);
    }
    dialog.querySelectorAll(".close-modal:not([aria-label])").forEach(function (b) {
      b.setAttribute("aria-label", "Close");
    });
    dialog.querySelectorAll(".auth-btn-wrapper button[aria-label]").forEach(function (b) {
      b.removeAttribute("aria-label"); // named by its visible word
    });
    dialog.querySelectorAll('input[aria-label^="auth-"]').forEach(function (input) {
      input.removeAttribute("aria-label"); // named by its visible label ("Value:")
    });
  }
  // Swagger UI's headings go from the API's title (h1) to the tags (h3): a screen reader's list of
  // headings had no level 2, and its tags, operations' parts and the Authorize dialog sat a level
  // too deep (axe: heading-order). Each h3-h6 is heard a level up, and never more than one below
  // the heading before it (the Authorize dialog's "Authorized" is an h6 under an h4). The title and description, and
  // the server and Authorize bar, are drawn outside Swagger UI's <main>, in no landmark, where a
  // screen reader's landmark list skipped them (axe: region): each is a named region.
  var regions = [
    [".information-container", "About this API"],
    [".scheme-container", "Server and authorization"]
  ];
  function outline() {
    var previous = 1;
    el.querySelectorAll("h1, h2, h3, h4, h5, h6").forEach(function (h) {
      var level = Number(h.tagName[1]);
      if (level > 2) {
        level = Math.min(level - 1, previous + 1);
        if (h.getAttribute("aria-level") !== String(level)) h.setAttribute("aria-level", String(level));
      }
      previous = level;
    });
    regions.forEach(function (pair) {
      el.querySelectorAll(pair[0] + ":not([role])").forEach(function (box) {
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", pair[1]);
      });
    });
  }
  // A plot tried out here was shown with no text alternative at all (axe: image-alt, critical). The
  // PNG carries one (pngtext.js): its sentence and, up to 30, its figures become the image's alt.
  var pictures = { last: "" };
  function describePictures() {
    el.querySelectorAll(".responses-wrapper img:not([alt])").forEach(function (img) {
      var block = img.closest(".opblock"), shown = block && block.querySelector(".request-url pre");
      var text = (shown && pictures[shown.textContent.trim()]) || pictures.last;
      var lines = text ? text.split("\n") : ["A chart from the API, with no description."];
      var figures = lines.slice(2, 32).join("; ");
      img.setAttribute("alt", lines[0] + (figures ? " Figures (" + lines[1] + "): " + figures +
        (lines.length > 32 ? "; and " + (lines.length - 32) + " more" : "") + "." : ""));
      numbersTable(img, lines);
    });
  }
  // The plot's figures as a table under it, as the web page's job view has: in the alt text a
  // long chart (a daily one lists every day) was cut at 30 figures and could not be read by row.
  function numbersTable(img, lines) {
    var old = img.nextElementSibling;
    if (old && old.classList.contains("plot-numbers")) old.remove();
    if (lines.length < 3) return;
    function cut(line) {  // "label: value", the label may hold ": " itself
      var at = line.lastIndexOf(": ");
      return at < 0 ? [line, ""] : [line.slice(0, at), line.slice(at + 2)];
    }
    function row(cells, tag) {
      var tr = document.createElement("tr");
      cells.forEach(function (text, i) {
        var cell = document.createElement(tag);
        if (tag === "th") cell.setAttribute("scope", "col");
        if (i === 1) cell.className = "num";
        cell.textContent = text;
        tr.appendChild(cell);
      });
      return tr;
    }
    var box = document.createElement("details"), summary = document.createElement("summary");
    var table = document.createElement("table"), head = document.createElement("thead");
    var body = document.createElement("tbody");
    box.className = "plot-numbers";
    summary.textContent = "The chart's numbers";
    head.appendChild(row(cut(lines[1]), "th"));
    lines.slice(2).forEach(function (line) { body.appendChild(row(cut(line), "td")); });
    table.appendChild(head);
    table.appendChild(body);
    box.appendChild(summary);
    box.appendChild(table);
    img.insertAdjacentElement("afterend", box);
  }
  // Tab past the dialog's last button (or Shift+Tab before its first) went on into the page behind
  // the dialog's backdrop, where the focus could not be seen: it wraps round inside the dialog.
  document.addEventListener("keydown", function (ev) {
    var dialog = el.querySelector(".modal-ux .modal-ux-inner");
    if (ev.key !== "Tab" || !dialog) return;
    var stops = Array.prototype.filter.call(
      dialog.querySelectorAll("button, input, select, textarea, a[href]"),
      function (n) { return !n.disabled && n.getClientRects().length; }
    );
    if (!stops.length) return;
    var first = stops[0], last = stops[stops.length - 1], at = document.activeElement;
    if (ev.shiftKey ? at === first || !dialog.contains(at) : at === last || !dialog.contains(at)) {
      ev.preventDefault();
      (ev.shiftKey ? last : first).focus();
    }
  });
  fetch(specUrl, { credentials: "same-origin" })
    .then(function (r) { return r.json(); })
    .then(function (spec) {
      spec.servers = [{ url: new URL(".", specUrl).href.replace(/\/$/, ""), description: "this API" }];
      window.ui = SwaggerUIBundle({
        spec: spec,
        dom_id: "#swagger-ui",
        // No deep links: with them Swagger UI puts each path's <a href="#/tag/op"> inside the
        // operation's summary <button> (axe: nested-interactive, serious, one per route), which
        // screen readers and keyboards cannot reach; the page works the same without them.
        deepLinking: false,
        tryItOutEnabled: false,
        presets: [SwaggerUIBundle.presets.apis],
        layout: "BaseLayout",
        requestInterceptor: function (req) {
          if (csrf) req.headers["X-CSRF-Token"] = csrf;
          return req;
        },
        responseInterceptor: function (res) {
          if (!/^image\/png/.test(res.headers["content-type"] || "") || !res.data || !res.data.arrayBuffer) return res;
          return res.data.arrayBuffer().then(function (buf) {
            pictures[res.url] = pictures.last = window.pngText(buf, "Description") || "";
            return res;
          });
        }
      });
      // Swagger UI draws some form controls with no label (axe: select-name and label, critical), and
      // draws them again as operations open: name each one whenever it appears.
      var unlabelled = [
        ["#servers", "Server"],
        [".examples-select-element", "Example"],
        ["textarea.body-param__text", "Request body"]
      ];
      new MutationObserver(function () {
        unlabelled.forEach(function (pair) {
          el.querySelectorAll(pair[0] + ":not([aria-label])").forEach(function (control) {
            control.setAttribute("aria-label", pair[1]);
          });
        });
        outline();
        describePictures();
        authorizeDialog();
      }).observe(el, { childList: true, subtree: true });
    })
    .catch(function (err) {
      el.textContent = "Could not load the API description: " + err;
    });
})();
