// Server-side apply of a Deployment's spec, step after step, as the API server does it:
// structured-merge-diff's Updater merges each step into the live object, then the API server's
// defaulting (SetDefaults_Deployment, pkg/apis/apps/v1/defaults.go) fills in what is unset, owned
// by no field manager, and its validation (ValidateDeploymentStrategy,
// pkg/apis/apps/validation/validation.go) refuses a Recreate strategy that still has a
// rollingUpdate. A refused step, or one with conflicts, leaves the live object as it was.
//
// Input on stdin: a JSON array of steps, each {"manager": name, "op": "apply" | "update",
// "spec": the spec's replicas and strategy as that manager sends them}. An "apply" is Helm 4's
// server-side apply of the rendered spec (with "force": true, `helm upgrade --force-conflicts`;
// Helm's default is without); an "update" writes
// the given fields over the live ones, as the HPA controller's writes to the scale subresource do.
// Output on stdout: a JSON array, one {"spec", "refused", "conflicts"} per step: the live spec
// after the step (defaulted), or the merged spec the API server refused, or the conflicts.
// Used by tests/deploy/test_server_side_apply.py, built against Debian's
// golang-k8s-sigs-structured-merge-diff-dev.
package main

import (
	"encoding/json"
	"errors"
	"os"

	"sigs.k8s.io/structured-merge-diff/v4/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v4/merge"
	"sigs.k8s.io/structured-merge-diff/v4/typed"
	"sigs.k8s.io/structured-merge-diff/v4/value"
)

// The part of apps/v1 Deployment's schema that the steps touch, as the API server's OpenAPI gives
// it to structured-merge-diff: DeploymentSpec, DeploymentStrategy and RollingUpdateDeployment are
// structs (granular maps of named fields, no x-kubernetes-map-type), replicas an int32, maxSurge
// and maxUnavailable IntOrString.
const schemaYAML = `types:
- name: deployment
  map:
    fields:
    - name: spec
      type: {namedType: spec}
- name: spec
  map:
    fields:
    - name: replicas
      type: {scalar: numeric}
    - name: strategy
      type: {namedType: strategy}
- name: strategy
  map:
    fields:
    - name: type
      type: {scalar: string}
    - name: rollingUpdate
      type: {namedType: rollingUpdate}
- name: rollingUpdate
  map:
    fields:
    - name: maxSurge
      type: {namedType: intOrString}
    - name: maxUnavailable
      type: {namedType: intOrString}
- name: intOrString
  scalar: untyped
`

type sameVersion struct{}

func (sameVersion) Convert(v *typed.TypedValue, _ fieldpath.APIVersion) (*typed.TypedValue, error) {
	return v, nil
}
func (sameVersion) IsMissingVersionError(error) bool { return false }

type step struct {
	Manager string                 `json:"manager"`
	Op      string                 `json:"op"`
	Spec    map[string]interface{} `json:"spec"`
	Force   bool                   `json:"force"`
}

type result struct {
	Spec      interface{} `json:"spec"`
	Refused   bool        `json:"refused"`
	Conflicts string      `json:"conflicts"`
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func toMap(tv *typed.TypedValue) map[string]interface{} {
	raw, err := value.ToJSON(tv.AsValue())
	must(err)
	out := map[string]interface{}{}
	must(json.Unmarshal(raw, &out))
	return out
}

func child(m map[string]interface{}, key string) map[string]interface{} {
	c, _ := m[key].(map[string]interface{})
	if c == nil {
		c = map[string]interface{}{}
		m[key] = c
	}
	return c
}

// defaulted is SetDefaults_Deployment's part for these fields: replicas 1 when unset, type
// RollingUpdate when unset, and with RollingUpdate, maxSurge and maxUnavailable 25% where unset.
func defaulted(obj map[string]interface{}) map[string]interface{} {
	spec := child(obj, "spec")
	if spec["replicas"] == nil {
		spec["replicas"] = 1
	}
	strategy := child(spec, "strategy")
	if t, _ := strategy["type"].(string); t == "" {
		strategy["type"] = "RollingUpdate"
	}
	if strategy["type"] == "RollingUpdate" {
		rollingUpdate := child(strategy, "rollingUpdate")
		for _, f := range []string{"maxSurge", "maxUnavailable"} {
			if rollingUpdate[f] == nil {
				rollingUpdate[f] = "25%"
			}
		}
	}
	return obj
}

func main() {
	var steps []step
	must(json.NewDecoder(os.Stdin).Decode(&steps))
	parser, err := typed.NewParser(typed.YAMLObject(schemaYAML))
	must(err)
	deployment := parser.Type("deployment")
	updater := &merge.Updater{Converter: sameVersion{}}
	live, err := deployment.FromUnstructured(map[string]interface{}{})
	must(err)
	managers := fieldpath.ManagedFields{}
	results := []result{}
	for _, s := range steps {
		var merged *typed.TypedValue
		var newManagers fieldpath.ManagedFields
		if s.Op == "apply" {
			config, err := deployment.FromUnstructured(map[string]interface{}{"spec": s.Spec})
			must(err)
			merged, newManagers, err = updater.Apply(live, config, "apps/v1", managers, s.Manager, s.Force)
			var conflicts merge.Conflicts
			if errors.As(err, &conflicts) {
				results = append(results, result{Conflicts: conflicts.Error()})
				continue
			}
			must(err)
			if merged == nil {
				merged = live // the merge changed no value: Apply says so with nil
			}
		} else {
			obj := toMap(live)
			spec := child(obj, "spec")
			for k, v := range s.Spec {
				spec[k] = v
			}
			written, err := deployment.FromUnstructured(obj)
			must(err)
			merged, newManagers, err = updater.Update(live, written, "apps/v1", managers, s.Manager)
			must(err)
		}
		obj := toMap(merged)
		spec := child(obj, "spec")
		strategy, _ := spec["strategy"].(map[string]interface{})
		refused := strategy != nil && strategy["type"] == "Recreate" && strategy["rollingUpdate"] != nil
		results = append(results, result{Spec: spec, Refused: refused})
		if refused {
			continue
		}
		live, err = deployment.FromUnstructured(defaulted(obj))
		must(err)
		managers = newManagers
	}
	must(json.NewEncoder(os.Stdout).Encode(results))
}
