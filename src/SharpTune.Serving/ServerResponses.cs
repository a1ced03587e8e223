using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace SharpTune.Serving;

static class ServerResponses
{
    public static async Task Json(HttpContext context, int status, JsonNode body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString(), context.RequestAborted);
    }
}
