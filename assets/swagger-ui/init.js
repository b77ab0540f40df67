// Starts Swagger UI on the service's own OpenAPI document (no validator badge: it would call
// validator.swagger.io). Served as a file so that the page's CSP needs no inline script.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
  });
});
