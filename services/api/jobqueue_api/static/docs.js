// Swagger UI over the API's own /openapi.json. Loaded as a file (the page's CSP forbids inline
// script). The spec is fetched relative to this page and its server is set to the page's base, so
// "Try it out" calls the API through the same port-forward or Ingress prefix the page came from.
(function () {
  "use strict";
  var el = document.getElementById("swagger-ui");
  var specUrl = new URL(el.getAttribute("data-spec"), document.baseURI);
  fetch(specUrl, { credentials: "same-origin" })
    .then(function (r) { return r.json(); })
    .then(function (spec) {
      spec.servers = [{ url: new URL(".", specUrl).href.replace(/\/$/, ""), description: "this API" }];
      window.ui = SwaggerUIBundle({
        spec: spec,
        dom_id: "#swagger-ui",
        deepLinking: true,
        tryItOutEnabled: false,
        presets: [SwaggerUIBundle.presets.apis],
        layout: "BaseLayout"
      });
    })
    .catch(function (err) {
      el.textContent = "Could not load the API description: " + err;
    });
})();
