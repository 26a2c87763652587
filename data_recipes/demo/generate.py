"""Generate the med42_train demo datasets.

This script wrote the files in data_recipes/demo/:

    medical_flashcards.json   300 records, medAlpaca flashcards layout (alpaca)
    medqa_train.jsonl         200 records, MedQA (jind11) USMLE layout
    dialogues_sharegpt.json   150 records, ShareGPT conversations layout
    preferences.jsonl         200 records, UltraFeedback-binarized flat layout
    mcqa_eval.jsonl           100 records, MedQA layout (demo eval: taught facts, unseen wording)

All content is synthetic demo data written for this project: it is composed
from small hand-written, general-knowledge medical tables below and varied
phrasing templates. It is not real patient data and is not copied from any
dataset. It is meant for smoke-testing the pipeline, not for clinical use.

Deterministic (random.Random(0)), stdlib only. Regenerate with:

    python data_recipes/demo/generate.py
"""

import json
import os
import random

OUT = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(0)

# ---------------------------------------------------------------------------
# Knowledge tables (hand-written, general medical knowledge)
# ---------------------------------------------------------------------------

# features: pronoun-free noun phrase that follows "presents with"
# extra: optional sentence added to treatment questions only ({Pr} = He/She)
DISEASES = [
    dict(name="streptococcal pharyngitis", sex=None, ages=(8, 30),
         features="a 2-day history of fever and sore throat without cough, with tonsillar exudates and tender anterior cervical lymph nodes",
         extra="A rapid antigen test for group A streptococcus is positive.",
         tx="Oral penicillin V or amoxicillin for 10 days",
         note="Treatment shortens symptoms and helps prevent acute rheumatic fever.",
         wrong=["Oral fluconazole", "Oral acyclovir", "Oral metronidazole"], acute=False, dx=True),
    dict(name="acute uncomplicated cystitis", sex="F", ages=(20, 45),
         features="2 days of painful urination, urinary frequency, and suprapubic discomfort without fever, flank pain, or vaginal discharge",
         extra="{Pr} is not pregnant, and urine dipstick is positive for leukocyte esterase and nitrites.",
         tx="Nitrofurantoin for 5 days",
         note="Trimethoprim-sulfamethoxazole or fosfomycin are alternatives depending on local resistance.",
         wrong=["Intravenous vancomycin", "Oral fluconazole", "Oral acyclovir"], acute=False, dx=True),
    dict(name="anaphylaxis", sex=None, ages=(15, 60),
         features="generalized hives, throat tightness, wheezing, and lightheadedness minutes after a bee sting, with a blood pressure of 78/40 mm Hg",
         extra="", tx="Intramuscular epinephrine",
         note="It is injected into the anterolateral thigh and can be repeated every 5 to 15 minutes; antihistamines are only adjuncts.",
         wrong=["Oral diphenhydramine alone", "Oral prednisone alone", "Observation for 24 hours without medication"], acute=True, dx=True),
    dict(name="diabetic ketoacidosis", sex=None, ages=(14, 30),
         features="polyuria, vomiting, abdominal pain, and deep, rapid breathing, with a blood glucose of 520 mg/dL, an anion gap metabolic acidosis, and positive serum ketones",
         extra="{Pr} has type 1 diabetes and recently missed insulin doses.",
         tx="Intravenous isotonic fluids and an insulin infusion",
         note="Potassium is monitored and replaced because insulin shifts potassium into cells.",
         wrong=["Oral metformin", "Subcutaneous insulin glargine alone and discharge", "Intravenous sodium bicarbonate alone"], acute=True, dx=True),
    dict(name="newly diagnosed type 2 diabetes", sex=None, ages=(45, 65), plain="type 2 diabetes", sym=False,
         features="a repeat HbA1c of 7.4% found on routine screening, a body mass index of 31 kg/m2, and normal kidney function",
         extra="", tx="Metformin plus lifestyle changes",
         note="Metformin lowers hepatic glucose production and rarely causes hypoglycemia on its own.",
         wrong=["Acarbose alone", "Hydrochlorothiazide", "Levothyroxine"], acute=False, dx=False),
    dict(name="hypertension in a patient with diabetes and albuminuria", sex="M", ages=(50, 70),
         plain="high blood pressure along with diabetes and protein in my urine", sym=False,
         features="repeated blood pressure readings around 152/94 mm Hg in the setting of type 2 diabetes and an elevated urine albumin-to-creatinine ratio",
         extra="", tx="An ACE inhibitor such as lisinopril",
         note="ACE inhibitors or ARBs lower blood pressure and slow progression of diabetic kidney disease.",
         wrong=["Hydralazine", "Clonidine", "Minoxidil"], acute=False, dx=False),
    dict(name="status epilepticus", sex=None, ages=(20, 60),
         features="a generalized tonic-clonic seizure lasting 7 minutes without return of consciousness, with a normal blood glucose",
         extra="", tx="Intravenous lorazepam",
         note="If seizures continue after a benzodiazepine, a second agent such as levetiracetam, fosphenytoin, or valproate is given.",
         wrong=["Intravenous haloperidol", "Oral carbamazepine", "Intravenous propranolol"], acute=True, dx=True),
    dict(name="acute gout", sex="M", ages=(45, 70),
         features="sudden severe pain, redness, and swelling of the first metatarsophalangeal joint that began overnight after heavy alcohol intake",
         extra="Joint aspirate shows needle-shaped, negatively birefringent crystals.",
         tx="An NSAID such as naproxen",
         note="Colchicine or a glucocorticoid are alternatives; urate-lowering drugs are not used alone for an acute flare.",
         wrong=["Allopurinol alone", "Probenecid alone", "Febuxostat alone"], acute=False, dx=True),
    dict(name="acute asthma exacerbation", sex=None, ages=(10, 35),
         features="wheezing, shortness of breath, and chest tightness after a cold, in the setting of known asthma, with diffuse expiratory wheezes",
         extra="", tx="An inhaled short-acting beta-2 agonist such as albuterol",
         note="Systemic corticosteroids are added for moderate or severe exacerbations.",
         wrong=["Inhaled salmeterol alone", "Oral montelukast alone", "Oral propranolol"], acute=True, dx=True),
    dict(name="iron deficiency anemia", sex="F", ages=(25, 45),
         features="fatigue and pallor with heavy menstrual periods, a microcytic anemia, and a low ferritin level",
         extra="", tx="Oral iron such as ferrous sulfate",
         note="The source of blood loss should also be evaluated and treated.",
         wrong=["Intramuscular vitamin B12", "Oral folic acid alone", "Erythropoietin injections"], acute=False, dx=True),
    dict(name="primary hypothyroidism", sex="F", ages=(35, 60),
         features="fatigue, cold intolerance, constipation, dry skin, and weight gain, with an elevated TSH and low free T4",
         extra="", tx="Levothyroxine",
         note="The dose is adjusted every 6 to 8 weeks based on the TSH level.",
         wrong=["Methimazole", "Propylthiouracil", "Radioactive iodine"], acute=False, dx=True),
    dict(name="Graves disease", sex="F", ages=(25, 45),
         features="weight loss, heat intolerance, palpitations, tremor, proptosis, and a diffusely enlarged nontender thyroid, with a suppressed TSH",
         extra="", tx="Methimazole",
         note="A beta-blocker is often added for symptoms; radioactive iodine and surgery are alternatives.",
         wrong=["Levothyroxine", "Liothyronine", "Hydrocortisone"], acute=False, dx=True),
    dict(name="primary syphilis", sex="M", ages=(20, 40),
         features="a painless, indurated genital ulcer with a clean base that appeared 3 weeks after unprotected sex",
         extra="Treponemal and nontreponemal serologic tests are positive.",
         tx="A single dose of intramuscular benzathine penicillin G",
         note="Partners should be evaluated and treated, and HIV testing is recommended.",
         wrong=["Oral acyclovir", "Oral fluconazole", "Oral metronidazole"], acute=False, dx=True),
    dict(name="chlamydial cervicitis", sex="F", ages=(18, 28),
         features="dysuria and mucopurulent cervical discharge after sex with a new partner",
         extra="Nucleic acid amplification testing is positive for Chlamydia trachomatis.",
         tx="Oral doxycycline for 7 days",
         note="Azithromycin is an alternative, for example in pregnancy; partners should also be treated.",
         wrong=["Oral fluconazole", "Oral acyclovir", "Topical clotrimazole"], acute=False, dx=False),
    dict(name="vulvovaginal candidiasis", sex="F", ages=(20, 40),
         features="vulvar itching and a thick, white, curd-like vaginal discharge without odor, with a normal vaginal pH",
         extra="A potassium hydroxide preparation shows pseudohyphae.",
         tx="A single oral dose of fluconazole",
         note="Topical azole creams are an equally effective alternative.",
         wrong=["Oral metronidazole", "Oral doxycycline", "Intramuscular ceftriaxone"], acute=False, dx=True),
    dict(name="bacterial vaginosis", sex="F", ages=(20, 40),
         features="a thin, gray vaginal discharge with a fishy odor and a vaginal pH of 5.0",
         extra="Microscopy shows clue cells.",
         tx="Oral metronidazole for 7 days",
         note="Alcohol should be avoided during metronidazole treatment.",
         wrong=["Oral fluconazole", "Oral doxycycline", "Oral nitrofurantoin"], acute=False, dx=True),
    dict(name="herpes zoster", sex=None, ages=(60, 80),
         features="burning pain followed by a band of grouped vesicles on a red base on one side of the chest that does not cross the midline",
         extra="", tx="Oral valacyclovir",
         note="Antivirals work best when started within 72 hours of rash onset.",
         wrong=["Oral fluconazole", "Oral amoxicillin", "Topical mupirocin alone"], acute=False, dx=True),
    dict(name="early Lyme disease", sex=None, ages=(20, 60),
         features="an expanding red rash with central clearing on the thigh, fatigue, and low-grade fever 10 days after hiking in the woods of the northeastern United States",
         extra="", tx="Oral doxycycline",
         note="Amoxicillin or cefuroxime are alternatives, for example in pregnancy.",
         wrong=["Oral fluconazole", "Oral metronidazole", "Intravenous vancomycin"], acute=False, dx=True),
    dict(name="severe hyperkalemia with ECG changes", sex="M", ages=(55, 75),
         features="muscle weakness in the setting of chronic kidney disease, a serum potassium of 7.1 mEq/L, and peaked T waves on ECG",
         extra="", tx="Intravenous calcium gluconate",
         note="Calcium stabilizes the cardiac membrane; insulin with glucose and other measures then lower potassium.",
         wrong=["Intravenous potassium chloride", "Oral spironolactone", "Observation and repeat labs in one week"], acute=True, dx=False),
    dict(name="opioid overdose", sex=None, ages=(20, 45),
         features="unresponsiveness, a respiratory rate of 5/min, and pinpoint pupils, with a syringe found nearby",
         extra="", tx="Naloxone",
         note="It can be given intranasally, intramuscularly, or intravenously and may need repeating as its effect wears off.",
         wrong=["Flumazenil", "Atropine", "N-acetylcysteine"], acute=True, dx=True),
    dict(name="acetaminophen overdose", sex=None, ages=(16, 40),
         features="nausea after intentionally ingesting a large amount of acetaminophen 6 hours earlier, with a serum level above the treatment line",
         extra="", tx="N-acetylcysteine",
         note="It replenishes glutathione and works best when started within 8 hours of ingestion.",
         wrong=["Naloxone", "Flumazenil", "Fomepizole"], acute=True, dx=False),
    dict(name="organophosphate poisoning", sex=None, ages=(30, 60),
         features="excessive salivation, tearing, sweating, vomiting, diarrhea, small pupils, and bradycardia after spraying pesticides on a farm",
         extra="", tx="Atropine and pralidoxime",
         note="Atropine blocks muscarinic effects, and pralidoxime regenerates acetylcholinesterase.",
         wrong=["Naloxone", "Physostigmine", "N-acetylcysteine"], acute=True, dx=True),
    dict(name="Parkinson disease", sex=None, ages=(60, 78),
         features="a 1-year history of resting tremor of one hand, slowness of movement, and cogwheel rigidity",
         extra="", tx="Carbidopa-levodopa",
         note="Dopamine agonists or MAO-B inhibitors are options for some patients with mild symptoms.",
         wrong=["Haloperidol", "Donepezil", "Tetrabenazine"], acute=False, dx=True),
    dict(name="Alzheimer disease", sex=None, ages=(70, 85),
         features="2 years of gradually worsening short-term memory, getting lost in familiar places, and trouble managing finances, with an otherwise normal neurological examination",
         extra="", tx="Donepezil",
         note="Cholinesterase inhibitors modestly improve symptoms but do not stop progression.",
         wrong=["Carbidopa-levodopa", "Haloperidol", "Diazepam"], acute=False, dx=True),
    dict(name="major depressive disorder", sex=None, ages=(25, 50),
         features="2 months of low mood, loss of interest, poor sleep, low energy, and trouble concentrating, without any history of mania or psychosis",
         extra="", tx="A selective serotonin reuptake inhibitor such as sertraline",
         note="Psychotherapy is also effective, and combining both is often best for moderate depression.",
         wrong=["Haloperidol", "Diazepam", "Methylphenidate"], acute=False, dx=True),
    dict(name="Helicobacter pylori-associated duodenal ulcer", sex=None, ages=(35, 60),
         features="burning epigastric pain that improves with meals and a duodenal ulcer on endoscopy",
         extra="Biopsy urease testing is positive for Helicobacter pylori.",
         tx="A proton pump inhibitor with clarithromycin and amoxicillin",
         note="Bismuth quadruple therapy is preferred where clarithromycin resistance is common.",
         wrong=["Antacids alone", "Misoprostol alone", "Octreotide infusion"], acute=False, dx=False),
    dict(name="Clostridioides difficile colitis", sex=None, ages=(60, 80),
         features="profuse watery diarrhea and abdominal cramps 5 days after finishing a course of clindamycin",
         extra="Stool testing is positive for C. difficile toxin.",
         tx="Oral vancomycin or fidaxomicin",
         note="Intravenous vancomycin does not reach the colon and is ineffective for this infection.",
         wrong=["Intravenous vancomycin", "Oral clindamycin", "Loperamide alone"], acute=False, dx=True),
    dict(name="acute inferior ST-elevation myocardial infarction", sex="M", ages=(50, 70),
         features="45 minutes of crushing substernal chest pain radiating to the left arm with sweating, and ST elevation in leads II, III, and aVF",
         extra="{Pr} has received aspirin at a hospital with a catheterization laboratory.",
         tx="Immediate primary percutaneous coronary intervention",
         note="The goal is a door-to-balloon time of 90 minutes or less.",
         wrong=["Outpatient exercise stress test", "Discharge with sublingual nitroglycerin", "Elective bypass surgery in 6 weeks"], acute=True, dx=True),
    dict(name="pulmonary embolism", sex=None, ages=(40, 65),
         features="sudden pleuritic chest pain and shortness of breath 10 days after knee surgery, with a heart rate of 110/min and normal blood pressure",
         extra="CT pulmonary angiography shows a segmental pulmonary embolism.",
         tx="Anticoagulation, for example with apixaban or heparin",
         note="Thrombolysis is reserved for massive pulmonary embolism with hemodynamic instability.",
         wrong=["Aspirin alone", "Observation without treatment", "A vena cava filter as the only therapy"], acute=True, dx=True),
    dict(name="scabies", sex=None, ages=(8, 40),
         features="intensely itchy small papules and burrows in the finger web spaces and wrists that are worse at night, with similar itching in household members",
         extra="", tx="Topical permethrin 5% cream",
         note="Close contacts are treated at the same time, and bedding is washed in hot water.",
         wrong=["Topical hydrocortisone alone", "Oral fluconazole", "Topical clotrimazole"], acute=False, dx=True),
    dict(name="tinea corporis", sex=None, ages=(10, 50),
         features="an itchy, ring-shaped, scaly plaque with a raised border and central clearing on the forearm",
         extra="A potassium hydroxide preparation shows branching hyphae.",
         tx="A topical azole such as clotrimazole",
         note="Topical terbinafine also works; oral therapy is reserved for extensive disease.",
         wrong=["Topical hydrocortisone alone", "Oral valacyclovir", "Oral amoxicillin"], acute=False, dx=True),
    dict(name="Bell palsy", sex=None, ages=(25, 60),
         features="sudden weakness of one entire side of the face, including the forehead, with inability to close that eye and an otherwise normal neurological examination",
         extra="", tx="Oral prednisone started within 72 hours",
         note="Eye lubrication and taping the eye shut at night protect the cornea.",
         wrong=["Intravenous alteplase", "Oral carbidopa-levodopa", "Oral ciprofloxacin"], acute=False, dx=True),
    dict(name="giant cell arteritis", sex=None, ages=(65, 85),
         features="a new temporal headache, jaw pain when chewing, and scalp tenderness, with a markedly elevated ESR",
         extra="", tx="High-dose glucocorticoids started immediately",
         note="Treatment is not delayed for temporal artery biopsy because of the risk of permanent vision loss.",
         wrong=["No treatment until biopsy results return", "Oral sumatriptan", "Oral ibuprofen alone"], acute=True, dx=True),
    dict(name="tension pneumothorax", sex="M", ages=(18, 40),
         features="severe shortness of breath after a motorcycle crash, a blood pressure of 80/50 mm Hg, absent breath sounds on the left, and tracheal deviation to the right",
         extra="", tx="Immediate needle decompression followed by chest tube placement",
         note="It is a clinical diagnosis, and treatment should not wait for imaging.",
         wrong=["Chest x-ray before any intervention", "Intravenous furosemide", "Supplemental oxygen and observation only"], acute=True, dx=True),
]

# drugs: se[0] is the signature adverse effect when sig=True; the full list is
# used to exclude distractors that would also be correct.
DRUGS = [
    dict(drug="metformin", art="a", cls="biguanide", mech="decreases hepatic glucose production and improves insulin sensitivity",
         ind="type 2 diabetes", sex=None, sig=True, se=["lactic acidosis", "gastrointestinal upset", "vitamin B12 deficiency"]),
    dict(drug="lisinopril", art="an", cls="ACE inhibitor", mech="blocks conversion of angiotensin I to angiotensin II",
         ind="hypertension", sex=None, sig=True, se=["dry cough", "angioedema", "hyperkalemia", "nephrotoxicity", "teratogenicity"]),
    dict(drug="losartan", art="an", cls="angiotensin II receptor blocker", mech="blocks the angiotensin II type 1 receptor",
         ind="hypertension", sex=None, sig=False, se=["hyperkalemia", "dizziness", "teratogenicity", "nephrotoxicity"]),
    dict(drug="amlodipine", art="a", cls="dihydropyridine calcium channel blocker", mech="blocks L-type calcium channels in vascular smooth muscle, causing vasodilation",
         ind="hypertension", sex=None, sig=True, se=["peripheral edema", "flushing", "headache", "gingival hyperplasia"]),
    dict(drug="hydrochlorothiazide", art="a", cls="thiazide diuretic", mech="inhibits the sodium-chloride cotransporter in the distal convoluted tubule",
         ind="hypertension", sex=None, sig=True, se=["hypercalcemia", "hypokalemia", "hyponatremia", "hyperglycemia", "hyperuricemia", "photosensitivity"]),
    dict(drug="furosemide", art="a", cls="loop diuretic", mech="inhibits the Na-K-2Cl cotransporter in the thick ascending limb of the loop of Henle",
         ind="heart failure with fluid overload", sex=None, sig=True,
         se=["ototoxicity", "hypokalemia", "hypomagnesemia", "hyperuricemia", "nephrotoxicity", "photosensitivity"]),
    dict(drug="spironolactone", art="a", cls="potassium-sparing diuretic", mech="antagonizes the aldosterone receptor in the collecting duct",
         ind="heart failure with reduced ejection fraction", sex="M", sig=True, se=["gynecomastia", "hyperkalemia"]),
    dict(drug="metoprolol", art="a", cls="beta-1 selective blocker", mech="blocks beta-1 adrenergic receptors, lowering heart rate and contractility",
         ind="stable angina", sex=None, sig=True, se=["bradycardia", "fatigue", "masking of hypoglycemia symptoms", "sexual dysfunction"]),
    dict(drug="atorvastatin", art="a", cls="statin", mech="inhibits HMG-CoA reductase, the rate-limiting enzyme of cholesterol synthesis",
         ind="high LDL cholesterol", sex=None, sig=True, se=["myopathy", "elevated liver enzymes"]),
    dict(drug="warfarin", art="a", cls="vitamin K antagonist", mech="inhibits vitamin K epoxide reductase, reducing factors II, VII, IX, and X",
         ind="atrial fibrillation", sex=None, sig=True, se=["skin necrosis", "bleeding", "teratogenicity"]),
    dict(drug="heparin", art="an", cls="indirect thrombin inhibitor", mech="binds antithrombin and greatly increases its inactivation of thrombin and factor Xa",
         ind="deep vein thrombosis", sex=None, sig=True, se=["heparin-induced thrombocytopenia", "bleeding", "osteoporosis", "hyperkalemia"]),
    dict(drug="aspirin", art="an", cls="irreversible COX inhibitor", mech="irreversibly acetylates cyclooxygenase-1 and -2, reducing thromboxane A2 production",
         ind="coronary artery disease", sex=None, sig=True,
         se=["Reye syndrome in children", "gastrointestinal bleeding", "ototoxicity", "bleeding", "nephrotoxicity"]),
    dict(drug="clopidogrel", art="a", cls="P2Y12 receptor antagonist", mech="irreversibly blocks the ADP P2Y12 receptor on platelets",
         ind="a recent coronary stent", sex=None, sig=False, se=["bleeding", "thrombotic thrombocytopenic purpura (rare)"]),
    dict(drug="omeprazole", art="a", cls="proton pump inhibitor", mech="irreversibly inhibits the H+/K+ ATPase of gastric parietal cells",
         ind="gastroesophageal reflux disease", sex=None, sig=True,
         se=["hypomagnesemia", "Clostridioides difficile infection", "vitamin B12 deficiency", "fractures"]),
    dict(drug="levothyroxine", art="a", cls="thyroid hormone replacement", mech="provides synthetic T4 that is converted to active T3 in tissues",
         ind="hypothyroidism", sex=None, sig=False, se=["atrial fibrillation if overdosed", "bone loss if overdosed"]),
    dict(drug="sertraline", art="a", cls="selective serotonin reuptake inhibitor", mech="blocks reuptake of serotonin into presynaptic neurons",
         ind="major depressive disorder", sex=None, sig=True,
         se=["sexual dysfunction", "serotonin syndrome", "hyponatremia", "gastrointestinal upset", "QT prolongation"]),
    dict(drug="lithium", art="a", cls="mood stabilizer", mech="alters intracellular signaling, in part by inhibiting inositol recycling",
         ind="bipolar disorder", sex=None, sig=True,
         se=["nephrogenic diabetes insipidus", "tremor", "hypothyroidism", "nephrotoxicity", "teratogenicity", "bradycardia"]),
    dict(drug="haloperidol", art="a", cls="typical antipsychotic", mech="blocks dopamine D2 receptors",
         ind="schizophrenia", sex=None, sig=True,
         se=["extrapyramidal symptoms", "neuroleptic malignant syndrome", "tardive dyskinesia", "hyperprolactinemia",
             "QT prolongation", "gynecomastia", "sexual dysfunction"]),
    dict(drug="clozapine", art="an", cls="atypical antipsychotic", mech="blocks dopamine D4 and serotonin 5-HT2A receptors",
         ind="treatment-resistant schizophrenia", sex=None, sig=True,
         se=["agranulocytosis", "seizures", "myocarditis", "weight gain", "constipation", "myelosuppression", "QT prolongation",
             "hyperglycemia", "sexual dysfunction"]),
    dict(drug="amoxicillin", art="an", cls="aminopenicillin", mech="binds penicillin-binding proteins and inhibits bacterial cell wall synthesis",
         ind="acute otitis media", sex=None, sig=True,
         se=["rash when given during infectious mononucleosis", "hypersensitivity reactions", "diarrhea",
             "Clostridioides difficile infection", "Stevens-Johnson syndrome"]),
    dict(drug="vancomycin", art="a", cls="glycopeptide antibiotic", mech="binds D-Ala-D-Ala cell wall precursors and blocks peptidoglycan synthesis",
         ind="MRSA bacteremia", sex=None, sig=True,
         se=["infusion-related flushing (red man syndrome)", "nephrotoxicity", "ototoxicity"]),
    dict(drug="gentamicin", art="an", cls="aminoglycoside", mech="binds the 30S ribosomal subunit and causes misreading of mRNA",
         ind="gram-negative sepsis", sex=None, sig=True, se=["nephrotoxicity", "ototoxicity", "neuromuscular blockade"]),
    dict(drug="ciprofloxacin", art="a", cls="fluoroquinolone", mech="inhibits bacterial DNA gyrase and topoisomerase IV",
         ind="complicated urinary tract infection", sex=None, sig=True,
         se=["tendon rupture", "QT prolongation", "photosensitivity", "peripheral neuropathy", "Clostridioides difficile infection"]),
    dict(drug="doxycycline", art="a", cls="tetracycline", mech="binds the 30S ribosomal subunit and blocks attachment of aminoacyl-tRNA",
         ind="early Lyme disease", sex=None, sig=True, se=["photosensitivity", "tooth discoloration in children", "pill esophagitis"]),
    dict(drug="azithromycin", art="a", cls="macrolide", mech="binds the 50S ribosomal subunit and blocks translocation",
         ind="atypical pneumonia", sex=None, sig=True, se=["QT prolongation", "gastrointestinal upset", "ototoxicity"]),
    dict(drug="metronidazole", art="a", cls="nitroimidazole", mech="forms toxic free radicals that damage microbial DNA",
         ind="bacterial vaginosis", sex="F", sig=True,
         se=["disulfiram-like reaction with alcohol", "metallic taste", "peripheral neuropathy"]),
    dict(drug="isoniazid", art="an", cls="antituberculosis drug", mech="inhibits synthesis of mycolic acids in the mycobacterial cell wall",
         ind="latent tuberculosis", sex=None, sig=True, se=["peripheral neuropathy", "hepatotoxicity", "drug-induced lupus"]),
    dict(drug="rifampin", art="a", cls="rifamycin", mech="inhibits bacterial DNA-dependent RNA polymerase",
         ind="active tuberculosis", sex=None, sig=True,
         se=["orange discoloration of body fluids", "hepatotoxicity", "induction of cytochrome P450 enzymes"]),
    dict(drug="prednisone", art="a", cls="glucocorticoid", mech="binds intracellular glucocorticoid receptors and suppresses inflammatory gene expression",
         ind="polymyalgia rheumatica", sex=None, sig=True,
         se=["adrenal suppression", "hyperglycemia", "osteoporosis", "myopathy", "weight gain", "insomnia"]),
    dict(drug="morphine", art="an", cls="opioid analgesic", mech="activates mu-opioid receptors in the central nervous system",
         ind="severe cancer pain", sex=None, sig=True, se=["respiratory depression", "constipation", "miosis", "nausea"]),
    dict(drug="allopurinol", art="a", cls="xanthine oxidase inhibitor", mech="inhibits xanthine oxidase, reducing uric acid production",
         ind="recurrent gout", sex="M", sig=True, se=["Stevens-Johnson syndrome", "hypersensitivity reactions", "rash"]),
    dict(drug="methotrexate", art="an", cls="antimetabolite", mech="inhibits dihydrofolate reductase",
         ind="rheumatoid arthritis", sex=None, sig=True,
         se=["myelosuppression", "mucositis", "hepatotoxicity", "pulmonary fibrosis", "teratogenicity", "nephrotoxicity", "photosensitivity"]),
    dict(drug="amiodarone", art="a", cls="class III antiarrhythmic", mech="blocks potassium channels and prolongs repolarization",
         ind="recurrent ventricular tachycardia", sex=None, sig=True,
         se=["pulmonary fibrosis", "hypothyroidism", "hepatotoxicity", "bradycardia", "photosensitivity", "peripheral neuropathy",
             "QT prolongation", "corneal deposits"]),
    dict(drug="digoxin", art="a", cls="cardiac glycoside", mech="inhibits the Na+/K+ ATPase, increasing intracellular calcium in cardiac muscle",
         ind="atrial fibrillation with heart failure", sex=None, sig=True,
         se=["yellow-tinted vision", "nausea", "arrhythmias", "bradycardia", "gynecomastia"]),
    dict(drug="sildenafil", art="a", cls="phosphodiesterase-5 inhibitor", mech="inhibits phosphodiesterase-5, increasing cGMP and smooth muscle relaxation",
         ind="erectile dysfunction", sex="M", sig=True,
         se=["hypotension with nitrates", "headache", "flushing", "blue-tinted vision"]),
]

VITAMINS = [
    dict(vit="thiamine (vitamin B1)", defi="Wernicke encephalopathy and beriberi",
         clue="confusion, abnormal eye movements, and an unsteady gait in the setting of long-term heavy alcohol use",
         src="whole grains, pork, and legumes", ages=(40, 65)),
    dict(vit="niacin (vitamin B3)", defi="pellagra, with dermatitis, diarrhea, and dementia",
         clue="a rash on sun-exposed skin, chronic diarrhea, and memory problems in the setting of a corn-based diet",
         src="meat, fish, peanuts, and fortified grains", ages=(30, 60)),
    dict(vit="vitamin B12", defi="megaloblastic anemia with neurologic damage such as loss of vibration and position sense",
         clue="fatigue, a macrocytic anemia, numb feet, and reduced vibration sense after many years of a strict vegan diet",
         src="meat, fish, eggs, and dairy", ages=(30, 70)),
    dict(vit="folate", defi="megaloblastic anemia without neurologic findings, and neural tube defects in pregnancy",
         clue="fatigue and a macrocytic anemia with hypersegmented neutrophils, a normal neurological examination, and a diet lacking fresh vegetables",
         src="leafy green vegetables, legumes, and fortified grains", ages=(25, 60)),
    dict(vit="vitamin C", defi="scurvy, with bleeding gums, perifollicular hemorrhages, and poor wound healing",
         clue="bleeding gums, small bleeds around hair follicles, corkscrew hairs, and slow wound healing in the setting of a diet with almost no fruit or vegetables",
         src="citrus fruits, peppers, broccoli, and strawberries", ages=(60, 80)),
    dict(vit="vitamin D", defi="rickets in children and osteomalacia in adults",
         clue="bowed legs, widened wrists, and delayed walking in the setting of exclusive breastfeeding without supplements and little sun exposure",
         src="fortified milk, fatty fish, egg yolks, and sunlight exposure", ages=(1, 1)),
    dict(vit="vitamin K", defi="bleeding with a prolonged prothrombin time",
         clue="bleeding from the umbilical stump after a home birth without any newborn injections",
         src="leafy green vegetables, with some made by gut bacteria", ages=(0, 0)),
    dict(vit="vitamin A", defi="night blindness, dry eyes, and Bitot spots",
         clue="difficulty seeing in dim light and dry, foamy patches on the conjunctivae in the setting of long-term food insecurity",
         src="liver, dairy, eggs, and orange or dark green vegetables", ages=(4, 10)),
    dict(vit="vitamin B6 (pyridoxine)", defi="peripheral neuropathy, cracked lips, and sideroblastic anemia",
         clue="numbness and tingling of the feet 3 months after starting isoniazid without supplements",
         src="poultry, fish, potatoes, and bananas", ages=(25, 60)),
    dict(vit="riboflavin (vitamin B2)", defi="angular cheilitis, glossitis, and sore throat",
         clue="cracks at the corners of the mouth, a magenta-colored tongue, and a sore throat in the setting of a very limited diet",
         src="dairy, eggs, meat, and fortified cereals", ages=(30, 70)),
    dict(vit="vitamin E", defi="hemolytic anemia, peripheral neuropathy, and ataxia",
         clue="an unsteady gait, reduced vibration sense, and hemolytic anemia in the setting of chronic fat malabsorption from cystic fibrosis",
         src="vegetable oils, nuts, and seeds", ages=(15, 30)),
    dict(vit="zinc", defi="poor wound healing, loss of taste, hair loss, and a rash around the mouth and limbs",
         clue="a scaly rash around the mouth and on the hands, hair loss, and reduced taste in the setting of long-term parenteral nutrition",
         src="meat, shellfish, legumes, and nuts", ages=(30, 70)),
]

MICROBES = [
    dict(org="Streptococcus pneumoniae", ages=(55, 80),
         clue="fever, cough with rust-colored sputum, and right lower lobe consolidation, with gram-positive lancet-shaped diplococci on sputum Gram stain",
         fact="Streptococcus pneumoniae is a gram-positive lancet-shaped diplococcus and the most common bacterial cause of community-acquired pneumonia."),
    dict(org="Staphylococcus aureus", ages=(25, 45),
         clue="fever and a new heart murmur after injecting drugs, with blood cultures growing coagulase-positive gram-positive cocci in clusters",
         fact="Staphylococcus aureus is a coagulase-positive gram-positive coccus in clusters and a leading cause of endocarditis in people who inject drugs."),
    dict(org="Neisseria meningitidis", ages=(18, 22),
         clue="fever, headache, neck stiffness, and a petechial rash while living in a college dormitory, with gram-negative diplococci in cerebrospinal fluid",
         fact="Neisseria meningitidis is a gram-negative diplococcus that causes meningitis with a petechial rash, often in young adults living in close quarters."),
    dict(org="Escherichia coli", ages=(20, 40),
         clue="dysuria and urinary frequency, with a urine culture growing a lactose-fermenting gram-negative rod",
         fact="Escherichia coli, a lactose-fermenting gram-negative rod, is the most common cause of urinary tract infections."),
    dict(org="Clostridioides difficile", ages=(60, 85),
         clue="watery diarrhea after antibiotic therapy, with pseudomembranes seen on colonoscopy",
         fact="Clostridioides difficile is a spore-forming gram-positive anaerobe that causes antibiotic-associated pseudomembranous colitis."),
    dict(org="Mycobacterium tuberculosis", ages=(30, 60),
         clue="chronic cough, night sweats, weight loss, and an upper lobe cavity, with acid-fast bacilli in sputum",
         fact="Mycobacterium tuberculosis is an acid-fast bacillus that causes caseating granulomas and upper lobe cavitary lung disease."),
    dict(org="Helicobacter pylori", ages=(35, 60),
         clue="epigastric pain, with a gastric biopsy showing curved gram-negative rods and a positive urease test",
         fact="Helicobacter pylori is a urease-positive curved gram-negative rod that causes gastritis, peptic ulcers, and gastric MALT lymphoma."),
    dict(org="Treponema pallidum", ages=(20, 40),
         clue="a painless genital ulcer, with spirochetes seen on dark-field microscopy",
         fact="Treponema pallidum is the spirochete that causes syphilis, beginning with a painless chancre."),
    dict(org="Borrelia burgdorferi", ages=(20, 60),
         clue="an expanding target-shaped rash, fever, and joint aches after a deer tick bite",
         fact="Borrelia burgdorferi is the spirochete that causes Lyme disease and is transmitted by Ixodes ticks."),
    dict(org="Pseudomonas aeruginosa", ages=(20, 50),
         clue="fever and an infected burn wound with blue-green discharge and a grape-like odor, with culture growing an oxidase-positive gram-negative rod",
         fact="Pseudomonas aeruginosa is an oxidase-positive gram-negative rod with blue-green pigment that infects burns and the lungs in cystic fibrosis."),
    dict(org="Candida albicans", ages=(40, 70),
         clue="white plaques on the tongue and inner cheeks that scrape off, while using an inhaled corticosteroid",
         fact="Candida albicans is a yeast that forms pseudohyphae and causes oral thrush, especially with inhaled steroids or immunosuppression."),
    dict(org="Plasmodium falciparum", ages=(20, 50),
         clue="high fevers and confusion after travel to sub-Saharan Africa, with ring forms and banana-shaped gametocytes on blood smear",
         fact="Plasmodium falciparum causes the most severe form of malaria and shows banana-shaped gametocytes on blood smear."),
    dict(org="Giardia lamblia", ages=(20, 50),
         clue="foul-smelling, greasy diarrhea and bloating after drinking untreated stream water on a camping trip",
         fact="Giardia lamblia is a flagellated protozoan that causes fatty, foul-smelling diarrhea after drinking contaminated water."),
    dict(org="Listeria monocytogenes", ages=(0, 0),
         clue="fever and lethargy after a pregnancy during which the mother ate unpasteurized soft cheese, with cerebrospinal fluid growing gram-positive rods with tumbling motility",
         fact="Listeria monocytogenes is a gram-positive rod with tumbling motility that causes meningitis in newborns, older adults, and immunocompromised people."),
    dict(org="Legionella pneumophila", ages=(55, 75),
         clue="high fever, pneumonia, diarrhea, and hyponatremia after a hotel stay with a contaminated cooling tower",
         fact="Legionella pneumophila causes pneumonia linked to contaminated water systems, often with diarrhea and hyponatremia; urine antigen testing helps diagnosis."),
    dict(org="Epstein-Barr virus", ages=(15, 19),
         clue="fever, sore throat, posterior cervical lymph node swelling, and splenomegaly, with atypical lymphocytes and a positive heterophile antibody test",
         fact="Epstein-Barr virus causes infectious mononucleosis, with atypical lymphocytes and a positive heterophile (monospot) test."),
]

# lab: name, lo, hi, unit, decimals, low causes, high causes
LABS = [
    dict(lab="serum sodium", lo=135, hi=145, unit="mEq/L", dec=0,
         low="SIADH, thiazide diuretics, heart failure, and drinking excess water", high="dehydration and diabetes insipidus"),
    dict(lab="serum potassium", lo=3.5, hi=5.0, unit="mEq/L", dec=1,
         low="vomiting, diarrhea, and loop or thiazide diuretics", high="kidney failure, ACE inhibitors, potassium-sparing diuretics, and hemolyzed samples"),
    dict(lab="fasting plasma glucose", lo=70, hi=99, unit="mg/dL", dec=0,
         low="excess insulin or sulfonylureas and prolonged fasting", high="diabetes, physical stress, and glucocorticoids"),
    dict(lab="hemoglobin in adult women", sex="F", lo=12.0, hi=15.5, unit="g/dL", dec=1,
         low="iron deficiency, bleeding, and chronic disease", high="dehydration, smoking, living at high altitude, and polycythemia vera"),
    dict(lab="platelet count", lo=150000, hi=450000, unit="per microliter", dec=-3,
         low="immune thrombocytopenia, heparin, leukemia, and an enlarged spleen", high="iron deficiency, inflammation, and myeloproliferative disorders"),
    dict(lab="white blood cell count", lo=4000, hi=11000, unit="per microliter", dec=-2,
         low="viral infections, chemotherapy, and some medications", high="bacterial infection, glucocorticoids, and leukemia"),
    dict(lab="serum creatinine", lo=0.6, hi=1.2, unit="mg/dL", dec=1,
         low="low muscle mass", high="acute or chronic kidney disease and dehydration"),
    dict(lab="arterial blood pH", lo=7.35, hi=7.45, unit="", dec=2,
         low="acidosis, such as diabetic ketoacidosis or respiratory failure", high="alkalosis, such as from vomiting or hyperventilation"),
    dict(lab="arterial PaCO2", lo=35, hi=45, unit="mm Hg", dec=0,
         low="hyperventilation from anxiety, pulmonary embolism, or compensation for metabolic acidosis",
         high="hypoventilation, such as in COPD or opioid overdose"),
    dict(lab="serum bicarbonate", lo=22, hi=28, unit="mEq/L", dec=0,
         low="metabolic acidosis, such as from diarrhea or ketoacidosis", high="vomiting and diuretic use"),
    dict(lab="TSH", lo=0.4, hi=4.0, unit="mIU/L", dec=1,
         low="hyperthyroidism or too much thyroid hormone replacement", high="primary hypothyroidism"),
    dict(lab="total serum calcium", lo=8.5, hi=10.5, unit="mg/dL", dec=1,
         low="vitamin D deficiency, hypoparathyroidism, and chronic kidney disease", high="primary hyperparathyroidism and malignancy"),
    dict(lab="serum magnesium", lo=1.7, hi=2.2, unit="mg/dL", dec=1,
         low="alcohol use, diarrhea, diuretics, and proton pump inhibitors", high="kidney failure and excess magnesium intake"),
    dict(lab="mean corpuscular volume (MCV)", lo=80, hi=100, unit="fL", dec=0,
         low="iron deficiency and thalassemia", high="vitamin B12 or folate deficiency and heavy alcohol use"),
    dict(lab="HbA1c", lo=4.0, hi=5.6, unit="%", dec=1,
         low="conditions that shorten red blood cell survival, such as hemolysis", high="prediabetes (5.7 to 6.4%) or diabetes (6.5% or higher)"),
    dict(lab="INR in a person not taking anticoagulants", lo=0.8, hi=1.2, unit="", dec=1,
         low=None, high="warfarin, liver disease, and vitamin K deficiency"),
]

NERVES = [
    dict(nerve="radial nerve", mech="a midshaft fracture of the humerus", deficit="wrist drop and numbness over the back of the hand"),
    dict(nerve="median nerve", mech="compression in the carpal tunnel", deficit="numbness of the thumb, index, and middle fingers and weakness of the thenar muscles"),
    dict(nerve="ulnar nerve", mech="trauma near the medial epicondyle", deficit="clawing of the ring and little fingers, weak finger spreading, and numbness of the little finger"),
    dict(nerve="axillary nerve", mech="an anterior shoulder dislocation or surgical neck fracture of the humerus", deficit="weak shoulder abduction from deltoid paralysis and numbness over the lateral shoulder"),
    dict(nerve="common fibular (peroneal) nerve", mech="a fracture of the fibular neck", deficit="foot drop and numbness over the top of the foot"),
    dict(nerve="long thoracic nerve", mech="axillary lymph node dissection", deficit="winging of the scapula from serratus anterior weakness"),
    dict(nerve="recurrent laryngeal nerve", mech="thyroid surgery", deficit="hoarseness from vocal cord paralysis"),
    dict(nerve="femoral nerve", mech="a pelvic or groin operation", deficit="weak knee extension and a reduced patellar reflex"),
    dict(nerve="phrenic nerve", mech="tumor invasion in the mediastinum", deficit="paralysis and elevation of the hemidiaphragm on the same side"),
    dict(nerve="oculomotor nerve (cranial nerve III)", mech="compression by a posterior communicating artery aneurysm", deficit="ptosis, a dilated pupil, and an eye that rests down and out"),
]

VESSELS = [
    dict(vessel="middle cerebral artery", clue="sudden weakness and numbness of the right face and arm, with the leg relatively spared, and difficulty producing speech",
         fact="A middle cerebral artery stroke causes contralateral face and arm weakness greater than leg weakness, with aphasia if the dominant hemisphere is involved."),
    dict(vessel="anterior cerebral artery", clue="sudden weakness and numbness of the left leg, with the face and arm much less affected",
         fact="An anterior cerebral artery stroke causes contralateral leg weakness and sensory loss greater than arm or face involvement."),
    dict(vessel="posterior cerebral artery", clue="sudden loss of the left visual field in both eyes with macular sparing",
         fact="A posterior cerebral artery stroke causes contralateral homonymous hemianopia, often with macular sparing."),
    dict(vessel="middle meningeal artery", clue="a blow to the temple, brief loss of consciousness, a lucid interval, then rapid decline, with a biconvex hyperdense collection on CT",
         fact="Epidural hematoma usually results from middle meningeal artery injury and appears as a biconvex collection with a possible lucid interval."),
    dict(vessel="bridging veins", clue="gradually increasing confusion days after a minor fall while taking an anticoagulant, with a crescent-shaped collection crossing suture lines on CT",
         fact="Subdural hematoma results from torn bridging veins and appears as a crescent-shaped collection that crosses suture lines."),
    dict(vessel="left anterior descending artery", clue="crushing chest pain with ST elevation in leads V1 to V4",
         fact="The left anterior descending artery supplies the anterior left ventricle and anterior septum; occlusion causes ST elevation in V1 to V4."),
    dict(vessel="right coronary artery", clue="chest pain, bradycardia, and ST elevation in leads II, III, and aVF",
         fact="The right coronary artery supplies the inferior wall and, in most people, the SA and AV nodes; occlusion causes inferior ST elevation."),
    dict(vessel="left circumflex artery", clue="chest pain with ST elevation in leads I, aVL, V5, and V6",
         fact="The left circumflex artery supplies the lateral left ventricle; occlusion causes ST elevation in I, aVL, V5, and V6."),
]

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def cap(s):
    return s[:1].upper() + s[1:]


def lc(s):
    # lowercase first letter unless it starts an acronym or hyphenated token (N-acetylcysteine, ACE)
    if len(s) > 1 and (s[1].isupper() or s[1] == "-"):
        return s
    return s[:1].lower() + s[1:]


def join_list(items):
    items = list(items)
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return items[0] + " and " + items[1]
    return ", ".join(items[:-1]) + ", and " + items[-1]


def person(r, ages, sex=None):
    lo, hi = ages
    sex = sex or r.choice("MF")
    pr, Pr = ("he", "He") if sex == "M" else ("she", "She")
    if hi == 0:
        return "A %d-day-old %s" % (r.randint(2, 10), "boy" if sex == "M" else "girl"), pr, Pr
    if hi == 1:
        return "A %d-month-old %s" % (r.randint(12, 20), "boy" if sex == "M" else "girl"), pr, Pr
    age = r.randint(lo, hi)
    if age < 18:
        word = "boy" if sex == "M" else "girl"
    else:
        word = "man" if sex == "M" else "woman"
    return "A %d-year-old %s" % (age, word), pr, Pr


def fmt_val(x, dec):
    if dec <= 0:
        step = 10 ** (-dec)
        return "{:,}".format(int(round(x / step) * step))
    return ("%." + str(dec) + "f") % x


def lab_value(r, L, kind):
    lo, hi = L["lo"], L["hi"]
    span = hi - lo
    if kind == "normal":
        x = r.uniform(lo + 0.15 * span, hi - 0.15 * span)
    elif kind == "low":
        x = r.uniform(lo - 0.8 * span, lo - 0.2 * span)
        x = max(x, lo * 0.3)
    else:
        x = r.uniform(hi + 0.2 * span, hi + 0.9 * span)
    return fmt_val(x, L["dec"])


def lab_unit(L):
    return (" " + L["unit"]) if L["unit"] and L["unit"] != "%" else L["unit"]


def lab_range(L):
    return "%s to %s%s" % (fmt_val(L["lo"], L["dec"]), fmt_val(L["hi"], L["dec"]), lab_unit(L))


OPENERS = ["presents with", "comes to the clinic because of", "is evaluated for", "is seen by a physician for"]
ACUTE_OPENERS = ["is brought to the emergency department with", "presents to the emergency department with", "is evaluated urgently for"]

# ---------------------------------------------------------------------------
# Multiple-choice (MedQA layout) items: each key can produce many phrasings
# ---------------------------------------------------------------------------


def mcq_keys():
    keys = []
    for d in DISEASES:
        def tx_q(r, d=d):
            who, pr, Pr = person(r, d["ages"], d["sex"])
            op = r.choice(ACUTE_OPENERS if d["acute"] else OPENERS)
            q = "%s %s %s." % (who, op, d["features"])
            if d["extra"]:
                q += " " + d["extra"].format(pr=pr, Pr=Pr)
            q += " " + r.choice(["Which of the following is the most appropriate first-line treatment?",
                                  "Which of the following is the most appropriate initial management?",
                                  "What is the best next step in treatment?"])
            return q
        keys.append(("tx:" + d["name"], tx_q, d["tx"], list(d["wrong"]), "step2&3"))
        if d["dx"]:
            others = [cap(o["name"]) for o in DISEASES if o["dx"] and o is not d]

            def dx_q(r, d=d):
                who, pr, Pr = person(r, d["ages"], d["sex"])
                op = r.choice(ACUTE_OPENERS if d["acute"] else OPENERS)
                return "%s %s %s. %s" % (who, op, d["features"], r.choice(
                    ["Which of the following is the most likely diagnosis?",
                     "What is the most likely diagnosis?",
                     "Which diagnosis best explains these findings?"]))
            keys.append(("dx:" + d["name"], dx_q, cap(d["name"]), others, "step2&3"))
    for g in DRUGS:
        def stem(r, g=g):
            who, pr, Pr = person(r, (30, 75), g["sex"])
            return r.choice(["%s with %s is started on %s." % (who, g["ind"], g["drug"]),
                             "%s with %s is prescribed %s." % (who, g["ind"], g["drug"]),
                             "%s with %s begins treatment with %s." % (who, g["ind"], g["drug"])])
        mechs = [cap(o["mech"]) for o in DRUGS if o is not g]
        keys.append(("mech:" + g["drug"], lambda r, s=stem: s(r) + " " + r.choice(
            ["Which of the following best describes the mechanism of action of this drug?",
             "What is the primary mechanism of action of this medication?"]),
            cap(g["mech"]), mechs, "step1"))
        classes = [cap(o["cls"]) for o in DRUGS if o is not g]
        keys.append(("cls:" + g["drug"], lambda r, s=stem: s(r) + " " + r.choice(
            ["To which drug class does this medication belong?",
             "Which of the following drug classes includes this medication?"]),
            cap(g["cls"]), classes, "step1"))
        if g["sig"]:
            ses = [cap(o["se"][0]) for o in DRUGS if o is not g and o["sig"] and o["se"][0] not in g["se"]]
            keys.append(("se:" + g["drug"], lambda r, s=stem: s(r) + " " + r.choice(
                ["Which of the following adverse effects is most characteristically associated with this drug?",
                 "Which adverse effect should this patient be counseled about specifically for this drug?"]),
                cap(g["se"][0]), ses, "step1"))
    for v in VITAMINS:
        def vq(r, v=v):
            who, pr, Pr = person(r, v["ages"])
            return "%s %s %s. %s" % (who, r.choice(OPENERS), v["clue"], r.choice(
                ["Which of the following deficiencies is most likely?",
                 "A deficiency of which of the following is the most likely cause?"]))
        others = [cap(o["vit"]) + " deficiency" for o in VITAMINS if o is not v]
        keys.append(("vit:" + v["vit"], vq, cap(v["vit"]) + " deficiency", others, "step1"))
    for m in MICROBES:
        def mq(r, m=m):
            who, pr, Pr = person(r, m["ages"])
            return "%s %s %s. %s" % (who, r.choice(OPENERS), m["clue"], r.choice(
                ["Which of the following organisms is the most likely cause?",
                 "Which organism is most likely responsible?"]))
        keys.append(("mic:" + m["org"], mq, m["org"], [o["org"] for o in MICROBES if o is not m], "step1"))
    for L in LABS:
        def lq(r, L=L):
            who, pr, Pr = person(r, (20, 50), L.get("sex"))
            return "%s has laboratory testing as part of a health evaluation. %s" % (who, r.choice(
                ["Which of the following %s values is within the usual adult reference range?" % L["lab"],
                 "Which of the following values for %s would be considered normal?" % L["lab"]]))

        def lab_opts(r, L=L):
            correct = lab_value(r, L, "normal") + lab_unit(L)
            wrong = set()
            kinds = ["high", "high", "low"] if L["low"] is not None else ["high", "high", "high"]
            while len(wrong) < 3:
                w = lab_value(r, L, kinds[len(wrong)]) + lab_unit(L)
                if w != correct:
                    wrong.add(w)
            return correct, sorted(wrong)
        keys.append(("lab:" + L["lab"], lq, lab_opts, None, "step1"))
    nerves = [cap(n["nerve"]) for n in NERVES]
    for n in NERVES:
        def nq(r, n=n):
            who, pr, Pr = person(r, (20, 70))
            return "%s develops %s after %s. %s" % (who, n["deficit"], n["mech"], r.choice(
                ["Which nerve is most likely injured?", "Injury to which of the following nerves best explains these findings?"]))
        keys.append(("nerve:" + n["nerve"], nq, cap(n["nerve"]), [x for x in nerves if x != cap(n["nerve"])], "step1"))
    vessels = [cap(v["vessel"]) for v in VESSELS]
    for v in VESSELS:
        def vsq(r, v=v):
            who, pr, Pr = person(r, (55, 80))
            return "%s %s %s. %s" % (who, r.choice(ACUTE_OPENERS), v["clue"], r.choice(
                ["Which vessel is most likely involved?", "Which of the following vessels is most likely affected?"]))
        keys.append(("vessel:" + v["vessel"], vsq, cap(v["vessel"]), [x for x in vessels if x != cap(v["vessel"])], "step1"))
    return keys


def build_mcq(r, key, pos):
    name, qfun, correct, pool, step = key
    q = qfun(r)
    if callable(correct):
        correct, wrong = correct(r)
        wrong = r.sample(wrong, 3)
    else:
        pool = sorted(set(p for p in pool if p != correct))
        wrong = r.sample(pool, 3)
    r.shuffle(wrong)
    opts = wrong[:pos] + [correct] + wrong[pos:]
    letters = "ABCD"
    options = {letters[i]: opts[i] for i in range(4)}
    return {"question": q, "answer": correct, "options": options, "meta_info": step, "answer_idx": letters[pos]}


def make_mcqa():
    keys = mcq_keys()
    rng.shuffle(keys)
    held_out_keys, train_keys = keys[:100], keys[100:]
    # These held-out items are still drawn (and dropped) so that every file generated after this one stays
    # byte-identical; the eval set itself is written by make_mcqa_eval, from its own generator.
    held_out_pos = [0, 1, 2, 3] * 25
    rng.shuffle(held_out_pos)
    held_out = [build_mcq(rng, k, p) for k, p in zip(held_out_keys, held_out_pos)]
    seen = set(e["question"] for e in held_out)
    train_pos = [0, 1, 2, 3] * 50
    rng.shuffle(train_pos)
    train = []
    i = 0
    while len(train) < 200:
        k = train_keys[i % len(train_keys)]
        i += 1
        item = build_mcq(rng, k, train_pos[len(train)])
        if item["question"] in seen:
            continue
        seen.add(item["question"])
        train.append(item)
    return train


# ---------------------------------------------------------------------------
# The demo eval set: facts the training data teaches, asked in words it never uses
# ---------------------------------------------------------------------------
# Each stem is a fresh template (no 13-word run of it occurs in any training file) naming the entity, and every
# option is under 13 words, so the data stage's decontamination (13-gram overlap) finds nothing. An item is kept
# only if some SFT training record states its answer next to its entity, so a model that learned the training
# data can answer it. Its own generator (random.Random(1)) leaves the other files untouched.

MAX_OPTION_WORDS = 12  # decontamination also matches options of 13+ words


def eval_candidates(r):
    """(entity, question stem, correct answer, wrong-answer pool, meta_info) for every fact the tables hold."""
    out = []
    for d in DISEASES:
        out.append((d["name"], "On a pharmacotherapy quiz, a student must name the preferred initial therapy for %s. "
                    "Which answer should the student give?" % d["name"], d["tx"], d["wrong"], "step2&3"))
    for g in DRUGS:
        out.append((g["drug"], "A medication reconciliation lists %s, and the pharmacist is asked which drug class "
                    "this agent is grouped under. Which class is it?" % g["drug"], cap(g["cls"]),
                    [cap(o["cls"]) for o in DRUGS if o is not g], "step1"))
        if g["sig"]:
            out.append((g["drug"], "While counseling someone newly started on %s, which adverse effect is the one most "
                        "characteristically linked to this particular medicine?" % g["drug"], cap(g["se"][0]),
                        [cap(o["se"][0]) for o in DRUGS if o is not g and o["sig"] and o["se"][0] not in g["se"]],
                        "step1"))
    for v in VITAMINS:
        out.append((v["vit"], "A nutrition lecture asks which clinical problem is expected when a diet lacks %s for a "
                    "long period. Which problem is it?" % v["vit"], cap(v["defi"]),
                    [cap(o["defi"]) for o in VITAMINS if o is not v], "step1"))
    for n in NERVES:
        out.append((n["nerve"], "An anatomy examiner asks which finding would be expected after damage to the %s. "
                    "Which finding fits best?" % n["nerve"], cap(n["deficit"]),
                    [cap(o["deficit"]) for o in NERVES if o is not n], "step1"))
    for L in LABS:
        wrong = [lab_value(r, L, k) + lab_unit(L) for k in ("high", "high", "low" if L["low"] else "high")]
        out.append((L["lab"], "Reading a routine adult panel, which %s result would a clinician regard as sitting "
                    "inside the usual reference interval?" % L["lab"], lab_value(r, L, "normal") + lab_unit(L),
                    wrong, "step1"))
    return out


def is_taught(entity, answer, training_texts):
    """Some training record states the answer together with the entity (case-insensitive)."""
    entity, answer = entity.lower(), answer.lower()
    return any(entity in text and answer in text for text in training_texts)


def short_enough(option):
    return len(option.split()) <= MAX_OPTION_WORDS


def make_mcqa_eval(training_texts, size=100):
    r = random.Random(1)
    items = []
    for entity, stem, correct, pool, step in eval_candidates(r):
        pool = sorted(set(o for o in pool if o != correct and short_enough(o)))
        lab = correct[:1].isdigit()  # a normal lab value is taught through its reference range, not verbatim
        taught = is_taught(entity, "reference range for " + entity if lab else correct, training_texts)
        if taught and short_enough(correct) and len(pool) >= 3:
            items.append((stem, correct, r.sample(pool, 3), step))
    items = r.sample(items, min(size, len(items)))
    positions = ([0, 1, 2, 3] * size)[: len(items)]
    r.shuffle(positions)
    out = []
    for (stem, correct, wrong, step), pos in zip(items, positions):
        opts = wrong[:pos] + [correct] + wrong[pos:]
        out.append({"question": stem, "answer": correct, "options": dict(zip("ABCD", opts)), "meta_info": step,
                    "answer_idx": "ABCD"[pos]})
    return out


def sft_texts(flash, train, dialogues):
    """Every SFT training record as one lower-cased text."""
    texts = [(f["input"] + " " + f["output"]).lower() for f in flash]
    texts += [(t["question"] + " " + t["answer"]).lower() for t in train]
    texts += [" ".join(turn["value"] for turn in d["conversations"]).lower() for d in dialogues]
    return texts


# ---------------------------------------------------------------------------
# Flashcards (question -> answer)
# ---------------------------------------------------------------------------


def qa_pool():
    pool = []
    for d in DISEASES:
        ans = "The first-line treatment for %s is %s. %s" % (d["name"], lc(d["tx"]), d["note"])
        for t in ["What is the first-line treatment for %s?", "How is %s treated initially?",
                  "What is the initial therapy of choice for %s?"]:
            pool.append(("tx", t % d["name"], ans))
        if d["dx"]:
            pool.append(("dx", "What is the most likely diagnosis in a patient with %s?" % d["features"],
                         "These findings are most consistent with %s. First-line treatment is %s." % (d["name"], lc(d["tx"]))))
    for g in DRUGS:
        mech_ans = "%s is %s %s that %s." % (cap(g["drug"]), g["art"], g["cls"], g["mech"])
        pool.append(("mech", "What is the mechanism of action of %s?" % g["drug"], mech_ans))
        pool.append(("mech", "How does %s work?" % g["drug"], mech_ans))
        pool.append(("cls", "To which drug class does %s belong?" % g["drug"],
                     "%s belongs to the %s class; it %s." % (cap(g["drug"]), g["cls"], g["mech"])))
        pool.append(("se", "What are notable adverse effects of %s?" % g["drug"],
                     "Notable adverse effects of %s include %s." % (g["drug"], join_list(g["se"][:3]))))
        if g["sig"]:
            pool.append(("se", "Which drug used for %s is classically associated with %s?" % (g["ind"], g["se"][0]),
                         "%s, %s %s, is classically associated with %s." % (cap(g["drug"]), g["art"], g["cls"], g["se"][0])))
    for v in VITAMINS:
        pool.append(("vit", "What does %s deficiency cause?" % v["vit"],
                     "%s deficiency causes %s." % (cap(v["vit"]), v["defi"])))
        pool.append(("vit", "Which nutrient deficiency is suggested by %s?" % v["clue"],
                     "This suggests %s deficiency, which causes %s." % (v["vit"], v["defi"])))
        pool.append(("vit", "What are good dietary sources of %s?" % v["vit"],
                     "Good dietary sources of %s include %s." % (v["vit"], v["src"])))
    for m in MICROBES:
        pool.append(("mic", "Which organism is suggested by %s?" % m["clue"], m["fact"]))
        pool.append(("mic", "What are the key features of %s?" % m["org"], m["fact"]))
    for L in LABS:
        rng_ans = "The typical adult reference range for %s is %s, although exact limits vary slightly between laboratories." % (L["lab"], lab_range(L))
        pool.append(("lab", "What is the normal range for %s?" % L["lab"], rng_ans))
        pool.append(("lab", "What are common causes of an elevated %s?" % L["lab"],
                     "Common causes of an elevated %s include %s." % (L["lab"], L["high"])))
        if L["low"]:
            pool.append(("lab", "What are common causes of a low %s?" % L["lab"],
                         "Common causes of a low %s include %s." % (L["lab"], L["low"])))
    for n in NERVES:
        pool.append(("anat", "What deficit results from injury to the %s?" % n["nerve"],
                     "Injury to the %s causes %s." % (n["nerve"], n["deficit"])))
        pool.append(("anat", "Which nerve is at risk with %s?" % n["mech"],
                     "The %s is at risk with %s; injury causes %s." % (n["nerve"], n["mech"], n["deficit"])))
    for v in VESSELS:
        pool.append(("anat", "Which vessel is most likely involved in a patient with %s?" % v["clue"], v["fact"]))
    # dedupe by question
    out, seen = [], set()
    for item in pool:
        if item[1] not in seen:
            seen.add(item[1])
            out.append(item)
    return out


def make_flashcards():
    pool = qa_pool()
    chosen = rng.sample(pool, 300)
    return [{"instruction": "Answer this question truthfully", "input": q, "output": a} for _, q, a in chosen]


# ---------------------------------------------------------------------------
# Dialogues (ShareGPT layout)
# ---------------------------------------------------------------------------

SYSTEM_PROMPTS = [
    "You are a helpful, respectful and honest medical assistant.",
    "You are a careful medical assistant. Give accurate, concise answers and recommend professional care when appropriate.",
    "You are a knowledgeable clinical assistant who answers medical questions clearly and safely.",
]

URGENT_ANSWERS = [
    "Seek urgent care if symptoms get rapidly worse or you develop trouble breathing, chest pain, confusion, fainting, or a high fever that does not settle.",
    "Get emergency help for severe or rapidly worsening symptoms, such as difficulty breathing, chest pain, new weakness, or confusion. Otherwise, follow up with your clinician as planned.",
    "If you feel much worse, cannot keep fluids down, or notice breathing problems, chest pain, or confusion, seek urgent medical care right away.",
]


def disease_dialogue(r, d, n):
    turns = []
    if d["acute"]:
        q1 = r.choice(["I'm a nursing student. What is the first-line management of %s?",
                       "As a new resident, how should I initially treat %s?",
                       "What is the recommended initial treatment for %s?"]) % d["name"]
    else:
        q1 = r.choice(["I was just diagnosed with %s. How is it usually treated?",
                       "My doctor says I have %s. What is the usual treatment?",
                       "How is %s normally treated?"]) % d.get("plain", d["name"])
    turns += [q1, "%s is usually treated first with %s. %s" % (cap(d["name"]), lc(d["tx"]), d["note"])]
    if n >= 2 and not d.get("sym", True):
        turns += [r.choice(["When should I get urgent help?", "What warning signs should make me seek care quickly?"]),
                  r.choice(URGENT_ANSWERS)]
        n = min(n, 2)
    elif n >= 2:
        turns += [r.choice(["What symptoms usually go along with it?", "How does it typically present?",
                            "What are the typical signs?"]),
                  "A typical presentation includes %s." % d["features"]]
    if n >= 3:
        if d["acute"]:
            turns += [r.choice(["Is this something that can wait until the next day?", "How quickly does this need to be treated?"]),
                      "No. %s is an emergency, so treatment should start immediately while calling for senior help and monitoring the patient closely." % cap(d["name"])]
        else:
            turns += [r.choice(["When should I get urgent help?", "What warning signs should make me seek care quickly?"]),
                      r.choice(URGENT_ANSWERS)]
    return turns


def drug_dialogue(r, g, n):
    turns = [r.choice(["My doctor started me on %s for %s. How does it work?",
                       "I was prescribed %s for %s. What does it do?",
                       "Can you explain how %s works? I take it for %s."]) % (g["drug"], g["ind"]),
             "%s is %s %s that %s." % (cap(g["drug"]), g["art"], g["cls"], g["mech"])]
    if n >= 2:
        turns += [r.choice(["Are there side effects I should know about?", "What side effects can it cause?",
                            "Anything I should watch out for?"]),
                  "Notable side effects include %s. Tell your prescriber if you notice any of these." % join_list(g["se"][:3])]
    if n >= 3:
        turns += [r.choice(["Can I just stop taking it if I feel better?", "Is it okay to skip doses when I feel fine?"]),
                  "Please do not stop or skip %s without talking to your prescriber first. Some conditions need a full course or long-term treatment, and stopping suddenly can cause problems." % g["drug"]]
    return turns


def lab_dialogue(r, L, n):
    kinds = ["normal", "high"] + (["low"] if L["low"] else [])
    kind = r.choice(kinds)
    val = lab_value(r, L, kind) + lab_unit(L)
    where = {"normal": "within", "high": "above", "low": "below"}[kind]
    turns = [r.choice(["My %s came back at %s. Is that normal?", "My lab report shows a %s of %s. Should I be worried?",
                       "What does a %s of %s mean?"]) % (L["lab"], val),
             "The typical adult reference range for %s is %s, so %s is %s that range. Ranges vary slightly between laboratories, so review the result with your clinician." % (L["lab"], lab_range(L), val, where)]
    if n >= 2:
        d = "high" if kind != "low" else "low"
        turns += ["What can cause a %s value?" % d,
                  "Common causes of a %s %s include %s." % (d, L["lab"], L[d])]
    if n >= 3:
        turns += [r.choice(["Should I repeat the test?", "Do I need to do anything now?"]),
                  "Your clinician will decide based on your symptoms, medicines, and other results; a single value is often rechecked before making changes."]
    return turns


def vitamin_dialogue(r, v, n):
    turns = [r.choice(["What happens if you don't get enough %s?", "What problems does a lack of %s cause?"]) % v["vit"],
             "%s deficiency can cause %s." % (cap(v["vit"]), v["defi"])]
    if n >= 2:
        turns += [r.choice(["Which foods contain it?", "How can I get more of it from food?"]),
                  "Good sources include %s." % v["src"]]
    if n >= 3:
        turns += [r.choice(["Should I just take high-dose supplements?", "Is it safe to take a lot of supplements to be sure?"]),
                  "Not without checking first. A clinician can test for deficiency and suggest a safe dose, since some nutrients, such as vitamins A and D, can be harmful in excess."]
    return turns


def make_dialogues():
    topics = ([("d", x) for x in DISEASES] + [("g", x) for x in DRUGS] + [("l", x) for x in LABS] + [("v", x) for x in VITAMINS])
    order = []
    while len(order) < 150:
        t = topics[:]
        rng.shuffle(t)
        order += t
    order = order[:150]
    sys_idx = set(rng.sample(range(150), 30))
    out = []
    for i, (kind, x) in enumerate(order):
        n = rng.choice([1, 2, 2, 3])
        fn = {"d": disease_dialogue, "g": drug_dialogue, "l": lab_dialogue, "v": vitamin_dialogue}[kind]
        turns = fn(rng, x, n)
        conv = []
        if i in sys_idx:
            conv.append({"from": "system", "value": rng.choice(SYSTEM_PROMPTS)})
        for j, t in enumerate(turns):
            conv.append({"from": "human" if j % 2 == 0 else "gpt", "value": t})
        out.append({"id": "demo_%d" % i, "conversations": conv})
    return out


# ---------------------------------------------------------------------------
# Preferences (prompt, chosen, rejected)
# ---------------------------------------------------------------------------

VAGUE = [
    "It depends on a lot of things, so there is no single answer. Everyone is different.",
    "That is a complicated question. You could look it up online or ask someone.",
    "There are many possibilities and it is hard to say anything specific.",
]


def pref_pool():
    pool = []
    for d in DISEASES:
        chosen = "The first-line treatment for %s is %s. %s" % (d["name"], lc(d["tx"]), d["note"])
        for p in ["What is the first-line treatment for %s?", "How should %s be treated first?"]:
            p = p % d["name"]
            rej_wrong = "The first-line treatment for %s is %s." % (d["name"], lc(rng.choice(d["wrong"])))
            if d["acute"]:
                rej_unsafe = "This can usually wait; rest at home, skip the emergency department, and see a doctor in a week or two if it does not improve."
            else:
                rej_unsafe = "You can skip seeing a clinician and treat it with leftover antibiotics or a friend's prescription; most cases go away anyway."
            pool.append((p, chosen, [rej_wrong, rej_unsafe]))
    for g in DRUGS:
        p = "What does %s do, and what side effects can it cause?" % g["drug"]
        chosen = "%s is %s %s that %s. Notable side effects include %s." % (cap(g["drug"]), g["art"], g["cls"], g["mech"], join_list(g["se"][:2]))
        other = rng.choice([o for o in DRUGS if o is not g])
        rej_wrong = "%s is %s %s that %s. It has essentially no side effects." % (cap(g["drug"]), other["art"], other["cls"], other["mech"])
        rej_unsafe = "%s is very safe, so you can double the dose whenever you feel unwell and stop it whenever you like without telling anyone." % cap(g["drug"])
        pool.append((p, chosen, [rej_wrong, rej_unsafe]))
        p2 = "What is the mechanism of action of %s?" % g["drug"]
        pool.append((p2, "%s is %s %s that %s." % (cap(g["drug"]), g["art"], g["cls"], g["mech"]),
                     ["%s %s." % (cap(g["drug"]), other["mech"])]))
    for L in LABS:
        for _ in range(3):
            kind = rng.choice(["normal", "high"] + (["low"] if L["low"] else []))
            val = lab_value(rng, L, kind) + lab_unit(L)
            where = {"normal": "within", "high": "above", "low": "below"}[kind]
            p = "Is a %s of %s normal?" % (L["lab"], val)
            chosen = "The typical adult reference range for %s is %s, so %s is %s that range. Discuss the result with your clinician, who can interpret it in context." % (L["lab"], lab_range(L), val, where)
            wrong_where = "well within" if kind != "normal" else "dangerously outside"
            rej_wrong = "Yes, %s is %s the normal range, so there is nothing to think about." % (val, wrong_where) if kind != "normal" else \
                "No, %s is dangerously abnormal and needs emergency treatment right now." % val
            rej_unsafe = "Lab numbers do not really matter if you feel fine, so you can ignore this result and skip any follow-up."
            pool.append((p, chosen, [rej_wrong, rej_unsafe]))
    for v in VITAMINS:
        p = "What does %s deficiency cause?" % v["vit"]
        other = rng.choice([o for o in VITAMINS if o is not v])
        pool.append((p, "%s deficiency causes %s. Good sources include %s." % (cap(v["vit"]), v["defi"], v["src"]),
                     ["%s deficiency causes %s." % (cap(v["vit"]), other["defi"]),
                      "Just take very high doses of every vitamin supplement every day; more is always better and there is no risk."]))
    for m in MICROBES:
        p = "Which organism typically causes %s?" % m["clue"]
        other = rng.choice([o for o in MICROBES if o is not m])
        pool.append((p, m["fact"], [other["fact"]]))
    for n in NERVES:
        p = "What happens if the %s is injured?" % n["nerve"]
        other = rng.choice([o for o in NERVES if o is not n])
        pool.append((p, "Injury to the %s causes %s. It is classically at risk with %s." % (n["nerve"], n["deficit"], n["mech"]),
                     ["Injury to the %s causes %s." % (n["nerve"], other["deficit"])]))
    seen, out = set(), []
    for item in pool:
        if item[0] not in seen:
            seen.add(item[0])
            out.append(item)
    return out


def make_preferences():
    pool = pref_pool()
    picked = rng.sample(pool, 200)
    out = []
    for p, chosen, rejects in picked:
        opts = rejects + [rng.choice(VAGUE)]
        rej = rng.choice(opts) if rng.random() < 0.8 else opts[0]
        out.append({"prompt": p, "chosen": chosen, "rejected": rej})
    return out


# ---------------------------------------------------------------------------


def write_json(name, obj):
    with open(os.path.join(OUT, name), "w", encoding="ascii") as f:
        json.dump(obj, f, indent=1, ensure_ascii=True)
        f.write("\n")


def write_jsonl(name, rows):
    with open(os.path.join(OUT, name), "w", encoding="ascii") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=True) + "\n")


def main():
    flash = make_flashcards()
    train = make_mcqa()
    dialogues = make_dialogues()
    prefs = make_preferences()
    evals = make_mcqa_eval(sft_texts(flash, train, dialogues))
    write_json("medical_flashcards.json", flash)
    write_jsonl("medqa_train.jsonl", train)
    write_json("dialogues_sharegpt.json", dialogues)
    # Two DPO iterations in the demo, as the paper's rounds have their own pair sets.
    write_jsonl("preferences.jsonl", prefs[:100])
    write_jsonl("preferences_iter2.jsonl", prefs[100:])
    write_jsonl("mcqa_eval.jsonl", evals)
    print("wrote %d flashcards, %d medqa_train, %d dialogues, %d preferences, %d mcqa_eval"
          % (len(flash), len(train), len(dialogues), len(prefs), len(evals)))


if __name__ == "__main__":
    main()
