//! The host's routes, from every deployed module, and the lookup of the
//! route a request is for.

use super::Route;
use crate::domain::ModuleName;

/// A request's route, with the path parameters it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub module: ModuleName,
    pub route: Route,
    pub params: Vec<(String, String)>,
}

/// Every module's routes. No two of them match the same request.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<(ModuleName, Route)>,
}

impl RouteTable {
    /// Whether `routes` may become the routes of `module`: none of them may
    /// match a request that a route of another module matches.
    pub fn check(&self, module: &ModuleName, routes: &[Route]) -> Result<(), String> {
        for route in routes {
            if let Some((owner, other)) = self
                .routes
                .iter()
                .find(|(owner, other)| owner != module && other.conflicts_with(route))
            {
                return Err(format!(
                    "route {} of module {module} matches the same requests as route {} of module {owner}; change or remove one of them",
                    route.describe(),
                    other.describe()
                ));
            }
        }
        Ok(())
    }

    /// Make `routes` the routes of `module`, in place of its old ones.
    /// Call [`RouteTable::check`] first.
    pub fn replace(&mut self, module: &ModuleName, routes: Vec<Route>) {
        self.routes.retain(|(owner, _)| owner != module);
        self.routes
            .extend(routes.into_iter().map(|route| (module.clone(), route)));
    }

    /// The route for `method` and the decoded path `segments`.
    pub fn find(&self, method: &str, segments: &[&str]) -> Option<RouteMatch> {
        self.routes.iter().find_map(|(module, route)| {
            if route.method != method {
                return None;
            }
            let params = route.pattern.bind(segments)?;
            Some(RouteMatch {
                module: module.clone(),
                route: route.clone(),
                params,
            })
        })
    }

    /// The methods of the routes whose paths fit `segments`, for a 405.
    pub fn methods_for(&self, segments: &[&str]) -> Vec<&str> {
        let mut methods: Vec<&str> = self
            .routes
            .iter()
            .filter(|(_, route)| route.pattern.bind(segments).is_some())
            .map(|(_, route)| route.method.as_str())
            .collect();
        methods.sort_unstable();
        methods.dedup();
        methods
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::{Manifest, ModuleRole};

    fn routes(json: &str) -> Vec<Route> {
        let workflows = vec!["w".to_owned()];
        Manifest::parse(json.as_bytes())
            .unwrap()
            .check(ModuleRole::Workflows(&workflows), 300_000)
            .unwrap()
    }

    fn module(name: &str) -> ModuleName {
        ModuleName::parse(name).unwrap()
    }

    #[test]
    fn routes_of_two_modules_may_not_overlap_but_a_redeploy_may_keep_its_own() {
        let mut table = RouteTable::default();
        let a =
            routes(r#"{"routes": [{"method": "GET", "path": "/orders/{id}", "workflow": "w"}]}"#);
        table.check(&module("a"), &a).unwrap();
        table.replace(&module("a"), a.clone());

        let b =
            routes(r#"{"routes": [{"method": "GET", "path": "/orders/new", "workflow": "w"}]}"#);
        let error = table.check(&module("b"), &b).unwrap_err();
        assert!(error.contains("GET /orders/new of module b"), "{error}");
        assert!(error.contains("GET /orders/{id} of module a"), "{error}");

        // Module a redeployed with the same routes: no conflict with itself.
        table.check(&module("a"), &a).unwrap();
    }

    #[test]
    fn a_request_finds_its_route_and_parameters() {
        let mut table = RouteTable::default();
        table.replace(
            &module("a"),
            routes(r#"{"routes": [{"method": "POST", "path": "/orders/{id}", "workflow": "w"}]}"#),
        );
        let found = table.find("POST", &["orders", "7"]).unwrap();
        assert_eq!(found.module, module("a"));
        assert_eq!(found.params, [("id".to_owned(), "7".to_owned())]);
        assert!(table.find("GET", &["orders", "7"]).is_none());
        assert_eq!(table.methods_for(&["orders", "7"]), ["POST"]);

        table.replace(&module("a"), Vec::new());
        assert!(table.find("POST", &["orders", "7"]).is_none());
    }
}
