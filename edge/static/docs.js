// Renders /openapi.json as a readable page: each operation with its credentials, parameters,
// request body schema (references resolved) and the statuses it answers. No dependencies.
"use strict";

const METHODS = ["get", "put", "post", "delete", "head", "options", "patch"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function resolve(doc, schema, seen = new Set()) {
  if (schema && typeof schema === "object") {
    if (typeof schema.$ref === "string") {
      const name = schema.$ref.split("/").pop();
      if (seen.has(name)) return { $ref: schema.$ref };
      return resolve(doc, doc.components.schemas[name], new Set([...seen, name]));
    }
    if (Array.isArray(schema)) return schema.map((item) => resolve(doc, item, seen));
    return Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, resolve(doc, v, seen)]));
  }
  return schema;
}

function schemaBlock(doc, schema) {
  const details = el("details", {}, el("summary", {}, "schema"));
  details.append(el("pre", {}, JSON.stringify(resolve(doc, schema), null, 2)));
  return details;
}

function operation(doc, path, method, op, shared) {
  const section = el("section", { id: op.operationId || "" });
  section.append(el("h2", {}, el("code", {}, `${method.toUpperCase()} ${path}`), " ", op.summary || ""));
  const who = (op.security || []).map((s) => Object.keys(s)[0]);
  section.append(el("p", { class: "muted" }, who.length ? `credentials: ${who.join(" or ")}` : "no credentials"));
  const params = [...(shared || []), ...(op.parameters || [])];
  if (params.length) {
    const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"),
      el("th", {}, "schema"), el("th", {}, "what"))));
    const body = el("tbody");
    for (const p of params) {
      body.append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in),
        el("td", {}, el("code", {}, JSON.stringify(p.schema))), el("td", {}, p.description || "")));
    }
    table.append(body);
    section.append(table);
  }
  if (op.requestBody) {
    const media = op.requestBody.content["application/json"];
    section.append(el("h3", {}, "Body (application/json)"), schemaBlock(doc, media.schema));
  }
  const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "meaning"),
    el("th", {}, "content"))));
  const body = el("tbody");
  for (const [status, response] of Object.entries(op.responses)) {
    const content = el("td");
    for (const [type, media] of Object.entries(response.content || {})) {
      content.append(el("div", {}, type), schemaBlock(doc, media.schema));
    }
    if (response.links) content.append(el("div", { class: "muted" }, `links: ${Object.keys(response.links).join(", ")}`));
    body.append(el("tr", {}, el("td", {}, status), el("td", {}, response.description || ""), content));
  }
  table.append(body);
  section.append(el("h3", {}, "Answers"), table);
  return section;
}

async function main() {
  const response = await fetch("/openapi.json");
  const doc = await response.json();
  document.getElementById("intro").textContent = doc.info.description;
  const operations = document.getElementById("operations");
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      if (item[method]) operations.append(operation(doc, path, method, item[method], item.parameters));
    }
  }
  const security = document.querySelector("#security tbody");
  for (const [name, scheme] of Object.entries(doc.components.securitySchemes)) {
    security.append(el("tr", {}, el("td", {}, name), el("td", {}, `${scheme.type} ${scheme.scheme}`),
      el("td", {}, scheme.description || "")));
  }
}

main().catch((err) => { document.getElementById("error").textContent = `Could not load /openapi.json: ${err}`; });
