// The Chinese prompt templates of cn-clip's zero-shot evaluation and its rule for which set a dataset uses.
// The template texts are data (Resources/zeroshot_templates.json, generated from the installed reference by
// scripts/reference/make_zeroshot_templates.py); only the dataset → set rule lives in code.

import Essentials
import Foundation

/// The reference's prompt-template sets (`cvinw_zeroshot_templates.py`), `{}` standing for the class name.
package enum ZeroShotTemplates {
    /// The set used for a dataset name that has no set of its own (the reference's `"openai"` entry).
    package static let defaultSetName = "openai_templates"

    /// Dataset name → template set, exactly the entries of `zeroshot_evaluation.py`'s `template_dict`.
    /// Other sets in the file (pets, cars, …) are defined by the reference but never chosen by its script.
    package static let setNameByDataset: [String: String] = [
        "fgvc-aircraft-2013b-variants102": "aircraft_templates",
        "food-101": "food_templates",
        "oxford-flower-102": "flower_templates",
        "eurosat_clip": "eurosat_templates",
        "resisc45_clip": "eurosat_templates",
        "country211": "country211_templates",
        "openai": "openai_templates",
    ]

    /// Every template set by name (`openai_templates`, `food_templates`, …), loaded once from the bundled resource.
    package static func all() throws -> [String: [String]] {
        try cache.get()
    }

    /// The name of the set the reference uses for `dataset` (an exact, case-sensitive match; else `openai_templates`).
    package static func setName(forDataset dataset: String) -> String {
        setNameByDataset[dataset] ?? defaultSetName
    }

    /// The templates the reference uses for `dataset`.
    package static func templates(forDataset dataset: String) throws -> [String] {
        let name = setName(forDataset: dataset)
        guard let set = try all()[name] else { throw ZeroShotError.unknownTemplateSet(name) }
        return set
    }

    /// `template` with its `{}` replaced by `label` (the reference's `template(classname)`); a `{}` inside the
    /// label itself is left alone, as an f-string would.
    package static func prompt(_ template: String, label: String) -> String {
        guard let r = template.range(of: "{}") else { return template }
        return template.replacingCharacters(in: r, with: label)
    }

    private static let cache = Result<[String: [String]], Error> {
        guard let url = Bundle.module.url(forResource: "zeroshot_templates", withExtension: "json") else {
            throw FileError(path: "zeroshot_templates.json", reason: "resource missing from the Evaluation bundle")
        }
        do {
            return try JSONDecoder().decode([String: [String]].self, from: Data(contentsOf: url))
        } catch {
            throw FileError(path: url.path, reason: "cannot read the template sets: \(error)")
        }
    }
}
