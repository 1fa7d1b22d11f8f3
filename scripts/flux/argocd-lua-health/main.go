// Command argocd-lua-health runs an Argo CD resource health script the way Argo CD
// runs one from argocd-cm (resource.customizations.health.<group>_<kind>), with
// gopher-lua, the Lua 5.1 interpreter Argo CD embeds, so that envseal's health check
// is tested on Argo CD's engine and not on a C Lua.
//
// What matches Argo CD (util/lua in argo-cd, read for behaviour, not copied):
//   - only the package, base and table libraries are open (a customization from
//     argocd-cm runs without useOpenLibs): no string, math, io or os library, so a
//     script calling string.find fails here as it would in Argo CD;
//   - the object is the global `obj`, a Lua table built from the object's JSON
//     (numbers are Lua numbers, JSON null is nil);
//   - the script's return value must be a table, encoded to JSON with
//     layeh.com/gopher-json and read as {status, message};
//   - a status outside Argo CD's set becomes Unknown "Lua returned an invalid health
//     status"; the script gets one second.
// Argo CD also opens a reduced os library (time functions only); envseal's script
// does not use it, so it is not provided.
//
// Usage: argocd-lua-health SCRIPT.lua < object.json
// Prints {"status": "...", "message": "..."} on stdout; a Lua error exits 1 with the
// error on stderr.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

var validStatus = map[string]bool{"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true}

func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetString(key, toLua(l, item))
		}
		return table
	}
	return lua.LNil
}

func run(scriptPath string, input io.Reader) (*healthStatus, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.NewDecoder(input).Decode(&obj); err != nil {
		return nil, fmt.Errorf("the object on stdin is not a JSON object: %w", err)
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	libs := []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}}
	for _, lib := range libs {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(string(script)); err != nil {
		return nil, err
	}
	returned := l.Get(-1)
	if returned.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return nil, err
	}
	var hs healthStatus
	if err := json.Unmarshal(encoded, &hs); err != nil {
		return nil, err
	}
	if !validStatus[hs.Status] {
		return &healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return &hs, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua-health SCRIPT.lua < object.json")
		os.Exit(2)
	}
	hs, err := run(os.Args[1], os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(hs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
